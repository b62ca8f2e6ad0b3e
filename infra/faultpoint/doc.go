// Package faultpoint kills the process at named points of its work, so the
// fault suite (testsuite/e2e, make faults) can prove that a worker dying
// there loses nothing and leaves nothing behind.
//
// VMVAULT_FAULTPOINT, read once when the process starts, is a comma list of
// points, each "name" (the first time the process reaches it) or "name@n"
// (the n-th time). When a listed point is reached that often, Hit writes
// one line to stderr and the process sends itself SIGKILL: no deferred
// call, no cleanup and no last heartbeat runs, as when the host loses
// power or the kernel's OOM killer strikes. Unset (production), Hit costs
// one atomic load.
//
// Every point is listed in Points with the phase it covers; the suite
// iterates that list, and a test checks that the code hits exactly those
// names.
package faultpoint
