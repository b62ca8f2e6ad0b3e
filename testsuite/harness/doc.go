// Package harness starts the real servers the end-to-end suites run
// against: a MinIO (S3) server and a Temporal dev server, both from the
// pinned binaries the Makefile builds into bin/ (`make tools`).
//
// Each Start function gives its server free ports and a private temporary
// directory, waits until it answers, and stops it when the test ends. A
// missing binary fails the test: a skipped end-to-end suite would look green
// while testing nothing.
package harness
