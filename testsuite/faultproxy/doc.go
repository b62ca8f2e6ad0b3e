// Package faultproxy is an S3 reverse proxy on loopback that injects the
// faults an object store shows in production, for the fault suite.
//
// A Proxy sits between a client (the worker) and a real S3 server (MinIO).
// It forwards every request unchanged, the Host header included, so the
// client's SigV4 signature (computed over the proxy's address) still
// verifies on the server; the proxy signs nothing itself.
//
// While enabled, a seeded Plan picks, per request, at most one fault:
//
//   - an S3 error reply (503 SlowDown or 500 InternalError, with the XML
//     body S3 sends), before the request reaches the server;
//   - a connection reset: the connection is closed without a reply, either
//     before forwarding or after the server applied the request (a PUT that
//     succeeded but whose reply was lost);
//   - a slow reply (a delay before forwarding);
//   - a truncated GET body: the full Content-Length is declared, part of the
//     body sent, then the connection closed.
//
// Independently, listings can lag writes: ListObjectsV2 replies omit the keys
// PUT through the proxy in the last Plan.ListLag.
//
// Counts reports how many faults of each kind were injected. Enable and
// Disable switch injection at runtime, so setup (vault init) runs clean.
package faultproxy
