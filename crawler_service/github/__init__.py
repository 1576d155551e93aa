"""GitHub, as the crawl talks to it: the REST client with pagination, ETags and bounded concurrency
(`client`), its reactions to rate limits and failures as pure decisions (`ratelimit`), and the
errors it raises (`errors`)."""
