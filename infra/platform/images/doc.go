// Package images is the platform where a VM is a folder of disk images: the
// development default, and the place restores of stopped VMs land.
//
// Under a root directory, each VM is a folder <root>/<vm>/ that holds vm.json
// (a platform.VM in JSON) and the VM's raw disk image files, named in
// vm.json relative to the folder. Sparse images stay sparse: reads skip
// holes (SEEK_DATA/SEEK_HOLE) and restores write only data.
//
// Images VMs are stopped VMs. A snapshot takes no copy: it checks that no
// process holds a disk open for writing (QEMU's image locks, see imagelock)
// and records a fingerprint of each image file (size, mtime, ctime, inode).
// Reading a disk re-checks the fingerprint before and after, so a disk that
// changed under a backup fails it with platform.ErrDiskChanged instead of
// producing a torn recovery point. A vm.json that says the VM is running is
// refused with platform.ErrVMRunning: such VMs need the qemu platform.
//
// Only raw images are read and written now; qcow2 disks are described but
// snapshots and restores of them fail with platform.ErrNotSupported.
package images
