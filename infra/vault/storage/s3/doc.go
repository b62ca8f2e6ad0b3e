// Package s3 is a storage.Backend on any S3 API (AWS S3, MinIO, Ceph RGW,
// Cloudflare R2) through aws-sdk-go-v2.
//
// A backend is one bucket and an optional key prefix inside it, so several
// vaults can share a bucket. Objects are written with a single PutObject,
// which S3 makes atomic: readers see the whole object or none. Provider
// errors for missing keys (NoSuchKey, NotFound, HTTP 404) are translated to
// storage.ErrNotFound at this edge.
//
// Credentials are either given in Config (static keys) or found the usual
// AWS way (environment, shared config files, instance roles). They are never
// logged.
package s3
