"""The crawler's data: its tables (`models`) and migrations, the write side (`store.CrawlerStore`
and the `records` it reads and writes), the read side behind PullRequestService (`queries`), and
the pure rules computed over stored pull requests: closing references (`links`) and size classes
and cycle times (`cycle_times`)."""
