"""What the crawler serves over gRPC: the `PullRequestService` servicer and its protobuf conversions
(`pull_requests`), and the starter of `backfill_links` runs that a query asks the scheduler for when
a repository's closing links were never computed (`backfill`)."""
