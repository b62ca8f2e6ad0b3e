// Package activities holds vmvault's Temporal activities. They are thin:
// each calls into infra/ and translates its errors into Temporal application
// errors, non-retryable (with a type name from this package) when retrying
// cannot help.
//
//   - Host runs on a hypervisor host's queue (vmvault-host-<name>): anything
//     that touches a VM or its disks, including moving disk data to and from
//     the vault, so bulk data never passes through a central worker.
//   - Vault runs on the central queue: work on the vault alone (parents,
//     recovery points).
package activities
