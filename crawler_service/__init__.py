"""The crawler: executes runs pushed by the scheduler and answers queries over the crawled data."""
