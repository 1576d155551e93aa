"""Who may call what: bearer tokens (`tokens`: the tokens file, hashing, creation and revocation;
`table`: the in-memory table reloaded when the file changes), scopes and the RPC -> scope table
(`scopes`), the caller of the current RPC (`caller`), the server interceptor that authenticates and
authorizes every call (`interceptor`), TLS and the refusal to listen unprotected (`transport`), and
what clients send (`credentials`)."""
