// Command vmfixture makes and changes sample VMs for the demo:
//
//	vmfixture create ROOT NAME      sample VM (ext4 OS disk, data disk, temp disk)
//	vmfixture mutate ROOT NAME OFF N  change N MiB of data0 at OFF MiB, and the OS disk
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/vmvault/vmvault/testsuite/vmfixture"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vmfixture:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 3 && args[0] == "create":
		vm, err := vmfixture.Create(args[1], vmfixture.DefaultSpec(args[2]))
		if err != nil {
			return err
		}
		fmt.Printf("created sample vm %s with %d disks in %s\n", vm.Name, len(vm.Disks), args[1])
		return nil
	case len(args) == 5 && args[0] == "mutate":
		off, err1 := strconv.ParseInt(args[3], 10, 64)
		n, err2 := strconv.ParseInt(args[4], 10, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("mutate: OFF and N are MiB counts")
		}
		if err := vmfixture.Mutate(args[1], args[2], off, n, uint64(off)); err != nil {
			return err
		}
		fmt.Printf("changed %d MiB of %s/data0 at %d MiB and a few bytes of its os disk\n", n, args[2], off)
		return nil
	}
	return fmt.Errorf("usage: vmfixture create ROOT NAME | vmfixture mutate ROOT NAME OFF_MIB N_MIB")
}
