"""The `ghpulse` command (`main`): the service commands that start the scheduler and crawlers and
apply migrations (`services`, with `startup` turning start-up failures into one line), both
services in one process (`local`, behind `up` and `demo`), the client commands over gRPC (`runs`,
`schedules`, `queries`), the tokens file (`tokens`) and what they share to print results, progress
and errors (`output`, `tables`, `progress`)."""
