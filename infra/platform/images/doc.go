// Package images is the platform where a VM is a folder of disk images: the
// development default, and the place restores of stopped VMs land.
//
// Under a root directory, each VM is a folder <root>/<vm>/ that holds vm.json
// (a platform.VM in JSON) and the VM's raw disk image files, named in
// vm.json relative to the folder. Sparse images stay sparse: reads skip
// holes (SEEK_DATA/SEEK_HOLE) and restores write only data.
//
// # No symlinks
//
// Every open of vm.json, a disk image or a restore file resolves its path
// beneath the VM folder without following any symlink (openat2 with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS; on kernels without openat2, openat
// with O_NOFOLLOW on each path element), and the result must be a regular
// file; the VM folder itself must be a real folder in the root. A symlinked
// image or a symlinked folder on its path is refused with an error wrapping
// platform.ErrInvalidVM that names the vm, the disk and the path: a backup
// never reads, and a restore never writes, a file outside the VM folder.
// vm.json is validated field by field ("disks[1].size_bytes: negative
// (-5)"); unknown fields are allowed. No path element of a disk file may
// start with a dot: hidden names are the platform's own.
//
// # Backups
//
// Images VMs are stopped VMs. A snapshot takes no copy: it checks that no
// process holds a disk open for writing (QEMU's image locks, see imagelock)
// and records a fingerprint of each image file (size, mtime, ctime, inode).
// Reading a disk re-checks the fingerprint before and after, so a disk that
// changed under a backup fails it with platform.ErrDiskChanged instead of
// producing a torn recovery point. A vm.json that says the VM is running is
// refused with platform.ErrVMRunning: such VMs need the qemu platform.
//
// # Restores
//
// A restore never opens an image for writing. With h a hash of the stage
// (the restore job's id):
//
//   - PrepareNewVM claims <root>/<vm>/ atomically, holding only the marker
//     .restore-<h>.new with the VM definition; without vm.json the folder is
//     not a VM for ListVMs and DescribeVM. A retry of the stage gets the
//     same VM; anything else there is platform.ErrVMExists.
//   - StageDisk writes a disk into .<file>.restore-<h> beside its image
//     (see diskfile), sparse; a retry of the stage reopens it as it was.
//   - CommitRestore refuses a running VM, takes QEMU's write lock on every
//     image it replaces and every staged file (platform.ErrDiskBusy if a VM
//     or another restore holds one), syncs the staged files, and writes its
//     plan to the journal .restore-<h>.commit. Then for each disk the image
//     is renamed to <file>.replaced-<UTC time> (kept, and reported in
//     CommitResult.Kept, or deleted at the end with DiscardReplaced) and the
//     staged file to the image's name, each folder synced; vm.json is
//     written last, atomically. A retry after a crash redoes only the steps
//     the files show undone; a retry after success finds nothing staged and
//     vm.json at the sizes asked, and succeeds.
//   - AbortRestore rolls back a commit that began and did not finish (old
//     images renamed back, the old vm.json rewritten), removes the stage's
//     staging files, and removes a prepared folder that has no vm.json and
//     holds the stage's marker: never a real VM.
//
// Manages reports paths under the root (symlinks resolved), where a
// disks-only restore must not write.
//
// Only raw images are read and written now; qcow2 disks are described but
// snapshots and restores of them fail with platform.ErrNotSupported.
package images
