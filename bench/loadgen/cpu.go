package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuSnap is a sample of the machine's CPU time and of the server's and this process's, so a
// result can say how much CPU the server used and how much other processes took meanwhile
// (the noise of a shared machine).
type cpuSnap struct {
	t                 time.Time
	busy, server, own uint64 // clock ticks
}

const clkTck = 100 // USER_HZ on Linux

func procTicks(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 { // fields 3.. after the comm; utime and stime are fields 14 and 15
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return u + st
}

func snapCPU(serverPID int) cpuSnap {
	s := cpuSnap{t: time.Now()}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line := strings.SplitN(string(b), "\n", 2)[0]
		f := strings.Fields(line)
		for i, v := range f[1:] {
			n, _ := strconv.ParseUint(v, 10, 64)
			if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
				continue
			}
			s.busy += n
		}
	}
	if serverPID > 0 {
		s.server = procTicks(serverPID)
	}
	s.own = procTicks(os.Getpid())
	return s
}

// cpuFields: cores used by the server, by the load generator and by every other process.
func cpuFields(a, b cpuSnap) string {
	secs := b.t.Sub(a.t).Seconds()
	if secs <= 0 || a.busy == 0 {
		return ""
	}
	cores := func(d uint64) float64 { return float64(d) / clkTck / secs }
	busy, server, own := b.busy-a.busy, b.server-a.server, b.own-a.own
	other := int64(busy) - int64(server) - int64(own)
	if other < 0 {
		other = 0
	}
	return fmt.Sprintf("server_cpu=%.2f loadgen_cpu=%.2f other_cpu=%.2f", cores(server), cores(own), cores(uint64(other)))
}

// cpuwatch: the CPU used by the server, by one client process (e.g. etcdctl check perf) and by
// every other process while that client runs; prints a RESULT line when it exits.
func cmdCPUWatch(args []string) {
	fs := flag.NewFlagSet("cpuwatch", flag.ExitOnError)
	serverPID := fs.Int("server-pid", 0, "server pid")
	clientPID := fs.Int("client-pid", 0, "client pid: measure until it exits")
	label := fs.String("label", "", "label copied into the RESULT line")
	fs.Parse(args)
	if *clientPID <= 0 {
		die("cpuwatch needs -client-pid")
	}
	first := snapCPU(*serverPID)
	c0 := procTicks(*clientPID)
	last, c1 := first, c0
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", *clientPID)); err != nil {
			break
		}
		last, c1 = snapCPU(*serverPID), procTicks(*clientPID)
		time.Sleep(200 * time.Millisecond)
	}
	secs := last.t.Sub(first.t).Seconds()
	if secs <= 0 {
		fmt.Printf("RESULT workload=cpuwatch label=%s secs=0\n", *label)
		return
	}
	cores := func(d uint64) float64 { return float64(d) / clkTck / secs }
	client := uint64(0)
	if c1 > c0 {
		client = c1 - c0
	}
	other := int64(last.busy-first.busy) - int64(last.server-first.server) - int64(last.own-first.own) - int64(client)
	if other < 0 {
		other = 0
	}
	fmt.Printf("RESULT workload=cpuwatch label=%s secs=%.1f server_cpu=%.2f client_cpu=%.2f other_cpu=%.2f\n", *label, secs,
		cores(last.server-first.server), cores(client), cores(uint64(other)))
}
