// Package qemu is the platform of running QEMU/KVM VMs: a VM is a QEMU
// process reached over its QMP socket, listed from an inventory folder.
//
// # Inventory
//
// The inventory has one folder per VM, <inventory>/<vm>/, holding:
//
//   - vm.json: the VM definition in the images platform's format (name, os,
//     cpu, memory_mb, disks with name, role, lun, file, format). Disk files
//     lie beneath the VM folder and are never reached through a symlink.
//     power_state is not read: QMP says whether the VM runs.
//   - qemu.json (optional): how to reach the running QEMU:
//     {"qmp_socket": "qmp.sock", "agent_socket": "qga.sock",
//     "nodes": {"os": "disk-os"}}. Socket paths are relative to the VM
//     folder unless absolute; nodes maps a disk name to the QEMU block node
//     (node-name of -blockdev) its guest device uses. Defaults: qmp.sock,
//     qga.sock and "disk-<name>".
//
// The definition and the QEMU settings are two files so that the images
// platform's staged restore (journaled commit, kept images, locks) serves
// this platform unchanged: a restore rewrites vm.json and never touches how
// QEMU is reached. Args turns an inventory entry into a QEMU command line.
//
// # Power
//
// A VM runs when its QMP socket answers (any state: a paused QEMU still
// holds its images); otherwise it is stopped.
//
// # Snapshots
//
// A stopped VM is snapshotted as the images platform does (raw images read
// in place, fingerprinted, refused while another process writes them).
// A stopped VM with a qcow2 disk is read through qemu-nbd instead: one
// read-only qemu-nbd daemon per disk on a socket in the VM folder, holding
// QEMU's image lock, the image checked with qemu-img check and its backing
// chain fingerprinted (see local.go). Restores write raw images: a new VM
// restored from a qcow2 VM has raw disks, and replacing the disks of a VM
// whose disks are qcow2 is refused (platform.ErrNotSupported).
//
// A running VM is captured by image fleecing, without pausing it: per disk
// a temporary qcow2 node backed by the disk's node is added, and one QMP
// transaction freezes the disk's active dirty bitmap, adds the next one and
// starts blockdev-backup sync=none (copy-before-write) into the temporary
// node; that node is exported read-only over QEMU's NBD server (a unix
// socket in the VM folder) and read with package nbd. What the guest writes
// after the transaction goes to the disk; the old data is copied to the
// temporary node first, so the export reads as the disk was at the
// transaction. DeleteSnapshot removes the export, cancels the job, deletes
// the node and the temporary file; it is idempotent.
//
// # Consistency
//
// Asked for app- or file-consistency, a running VM is quiesced through its
// guest agent (qemu-guest-agent on the agent socket; QEMU serves that
// socket, like QMP's, to one client at a time). InstallExtension installs
// or upgrades the backup extension (package guestext) in a Linux guest.
// The snapshot then runs the guest's pre-scripts (app-consistency), arms
// the extension's thaw watchdog, freezes the file systems only around the
// QMP transaction that starts copy-before-write, thaws at once (also when
// the transaction fails), disarms the watchdog and runs the post-scripts.
// The result is app-consistent when the pre-scripts and the freeze
// succeeded, file-consistent when only the freeze did, crash-consistent
// when no agent answers or nothing froze; Snapshot.Notes say why. A worker
// that dies while the guest is frozen leaves it to the watchdog, which
// thaws it within a minute; the next backup resets the agent's state.
// Windows guests run no scripts: their agent's freeze is a VSS snapshot.
//
// # Changed-block tracking
//
// Each disk has dirty bitmaps named vmvault-<generation>-<snapshot>: the
// active one records writes since the snapshot that created it; the
// frozen (disabled) ones each hold the writes between two snapshots. A
// snapshot's token records, per disk, the bitmap it started (its
// checkpoint) and the frozen chain; ChangedExtents(parent) is the union of
// the chain's bitmaps from the parent's checkpoint on, read as
// qemu:dirty-bitmap block status of the export. Bitmaps are persistent
// for qcow2 images and live as long as the QEMU process for raw ones.
// Frozen bitmaps are removed only by CommitChanges (platform.BitmapCommitter)
// once a recovery point is saved, so a failed backup loses no change. A
// missing or inconsistent bitmap, a parent taken while the VM was stopped,
// or a disk whose size changed gives ok=false: the caller compares
// checksums and the chain restarts.
//
// # Kept snapshots (instant restore)
//
// The platform is a platform.Keeper: Keep copies a snapshot's point-in-time
// image into sparse read-only files under <inventory>/.vmvault-kept/<vm>/<id>/
// (whole or absent: written under a hidden name, renamed when synced), so
// the snapshot itself can be deleted at once; NewVMFromKept makes a new VM
// of qcow2 overlays on them in one rename; RemoveKept refuses while a VM's
// disks use them as backing files (see kept.go, kept_vm.go).
package qemu
