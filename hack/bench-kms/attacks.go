/*
Copyright 2026 The rekey Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package main

// The resource attacks of issue 10 against 'rekey kms serve', by a client
// that knows an access key id and nothing else. Each prints what it cost
// the server: resident memory (VmRSS, and the high-water mark VmHWM, from
// /proc/PID/status) and how long slow clients were kept. Figures are
// printed with their targets, never asserted. The server is started with
// only the flags every version of 'rekey kms serve' has, so an older
// binary can be measured the same way (-rekey).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/rekey-dev/rekey/internal/kms/keystore"
)

const (
	// slowCap bounds how long the script waits for the server to cut off
	// a slow client or to answer a locked-out one.
	slowCap = 60 * time.Second
	// fdLimit is the open-file limit of the server in the lockout attack.
	fdLimit = 256
)

// procStatus reads VmRSS and VmHWM of a process, in MiB.
func procStatus(pid int) (rss, hwm float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}

// attackServer starts 'rekey kms serve' on a fresh keystore, through
// /bin/sh when wrap is a shell prefix (ulimit).
func attackServer(rekeyBin, dir, wrap string) (*server, error) {
	ks, rootFile, creds := filepath.Join(dir, "keys.rks"), filepath.Join(dir, "root.key"), filepath.Join(dir, "creds")
	root, err := keystore.GenerateRootKey()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(rootFile, []byte(root), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(creds, []byte(akid+" "+secret+"\n"), 0o600); err != nil {
		return nil, err
	}
	// Newer versions open only a keystore that exists; older ones have no
	// 'keystore init' and create it on first write.
	_ = exec.Command(rekeyBin, "keystore", "init", "--keystore", ks, "--root-key-file", rootFile).Run()
	args := []string{"kms", "serve", "--listen", "127.0.0.1:0", "--keystore", ks, "--root-key-file", rootFile, "--credentials-file", creds}
	cmd := exec.Command(rekeyBin, args...)
	if wrap != "" {
		cmd = exec.Command("/bin/sh", append([]string{"-c", wrap + ` && exec "$0" "$@"`, rekeyBin}, args...)...)
	}
	return start("rekey kms serve", cmd)
}

// garbage returns a request signed with a garbage signature by an access
// key id the server knows, in the given region.
func garbage(url, region string) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, url+"/", strings.NewReader("{}"))
	now := time.Now().UTC()
	r.Header.Set("Content-Type", "application/x-amz-json-1.1")
	r.Header.Set("X-Amz-Target", "TrentService.ListKeys")
	r.Header.Set("X-Amz-Date", now.Format("20060102T150405Z"))
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+akid+"/"+now.Format("20060102")+"/"+region+
		"/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="+strings.Repeat("0", 64))
	return r
}

func randomRegion(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// regionFlood sends n garbage-signed requests with random regions of
// regionLen characters, 8 at a time, and returns the status codes seen
// (-1: the server closed the connection before the client had sent the
// whole request).
func regionFlood(url string, n, regionLen int) map[int]int {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 30 * time.Second}
	var mu sync.Mutex
	codes := map[int]int{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				code := -1
				if resp, err := hc.Do(garbage(url, randomRegion(regionLen))); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	hc.CloseIdleConnections()
	return codes
}

// holdBodies opens n connections that each announce a body of announce
// bytes and send send bytes of it, and keeps them open until release is
// closed. It returns how many the server had closed by then.
func holdBodies(addr string, n, announce, send int, release chan struct{}) (closed *atomic.Int64, done *sync.WaitGroup) {
	closed, done = new(atomic.Int64), new(sync.WaitGroup)
	head := "POST / HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/x-amz-json-1.1\r\n" +
		"X-Amz-Target: TrentService.ListKeys\r\nContent-Length: " + strconv.Itoa(announce) + "\r\n\r\n"
	body := make([]byte, send)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			closed.Add(1)
			continue
		}
		done.Add(1)
		go func() {
			defer done.Done()
			defer func() { _ = c.Close() }()
			_, _ = io.WriteString(c, head)
			_, _ = c.Write(body)
			gone := make(chan struct{})
			go func() { _, _ = io.Copy(io.Discard, c); close(gone) }()
			select {
			case <-gone:
				closed.Add(1)
			case <-release:
			}
		}()
	}
	return closed, done
}

// cutOff trickles one piece every second and returns how long the server
// kept the connection (slowCap if it never closed it).
func cutOff(addr, head string, piece func(i int) string) time.Duration {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0
	}
	defer func() { _ = c.Close() }()
	t0 := time.Now()
	_, _ = io.WriteString(c, head)
	gone := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, c); close(gone) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-gone:
			return time.Since(t0)
		case <-tick.C:
			if time.Since(t0) >= slowCap {
				return slowCap
			}
			_, _ = io.WriteString(c, piece(i))
		}
	}
}

// kept says how long a slow client was kept.
func kept(d time.Duration) string {
	if d >= slowCap {
		return fmt.Sprintf("not cut off within %s", slowCap)
	}
	return fmt.Sprintf("cut off after %s", d.Round(100*time.Millisecond))
}

func runAttacks(rekeyBin string) error {
	dir, err := os.MkdirTemp("", "rekey-kms-attacks-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	s, err := attackServer(rekeyBin, dir, "")
	if err != nil {
		return err
	}
	pid := s.cmd.Process.Pid
	addr := strings.TrimPrefix(s.url, "http://")
	time.Sleep(time.Second)
	base, _ := procStatus(pid)
	fmt.Printf("kms attacks: %s, pid %d, %d cores; RSS at start %.1f MiB\n\n", rekeyBin, pid, numCPU(), base)
	report := func() {
		rss, hwm := procStatus(pid)
		fmt.Printf("    RSS %.1f MiB (%+.1f), peak so far %.1f MiB (%+.1f; target < +64 MiB)\n", rss, rss-base, hwm, hwm-base)
	}

	fmt.Println("1. 3,000 requests, each with a random 60 KB region and a garbage signature (finding 6)")
	codes := regionFlood(s.url, 3000, 60_000)
	fmt.Printf("    answers by status (-1: closed before the request was sent whole): %v\n", codes)
	report()
	fmt.Println("   3,000 more with random 32-character regions (the longest a region may be), garbage signatures")
	codes = regionFlood(s.url, 3000, 32)
	fmt.Printf("    answers by status: %v\n", codes)
	report()

	fmt.Println("2. 400 connections announcing 1 MiB bodies, sending 64 KiB and holding (finding 7)")
	release := make(chan struct{})
	closed, done := holdBodies(addr, 400, 1<<20, 64<<10, release)
	time.Sleep(3 * time.Second)
	fmt.Printf("    %d of 400 closed by the server within 3 s\n", closed.Load())
	report()
	close(release)
	done.Wait()
	fmt.Println("   400 connections announcing 60 KiB, sending all but one byte, holding")
	release = make(chan struct{})
	closed, done = holdBodies(addr, 400, 60<<10, 60<<10-1, release)
	time.Sleep(3 * time.Second)
	fmt.Printf("    %d of 400 closed by the server within 3 s\n", closed.Load())
	report()
	close(release)
	done.Wait()

	fmt.Println("3. slow clients, one piece a second (finding 7)")
	body := cutOff(addr, "POST / HTTP/1.1\r\nHost: "+addr+"\r\nContent-Length: 1000\r\n\r\n", func(int) string { return " " })
	hdrs := cutOff(addr, "POST / HTTP/1.1\r\n", func(i int) string { return fmt.Sprintf("X-Slow-%d: y\r\n", i) })
	fmt.Printf("    a body trickled a byte a second: %s (target <= 30 s)\n", kept(body))
	fmt.Printf("    headers trickled a line a second: %s (target <= 30 s)\n", kept(hdrs))
	report()
	_, hwm := procStatus(pid)
	s.stop()

	fmt.Printf("4. under an open-file limit of %d, 600 connections that send their headers, announce a body and never send it, "+
		"reconnecting when closed; then a signed ListKeys (finding 7)\n", fdLimit)
	lockDir := filepath.Join(dir, "lockout")
	if err := os.Mkdir(lockDir, 0o700); err != nil {
		return err
	}
	ls, err := attackServer(rekeyBin, lockDir, fmt.Sprintf("ulimit -n %d", fdLimit))
	if err != nil {
		return err
	}
	defer ls.stop()
	lockAddr := strings.TrimPrefix(ls.url, "http://")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var opened atomic.Int64
	head := "POST / HTTP/1.1\r\nHost: " + lockAddr + "\r\nContent-Length: 100\r\n\r\n"
	for range 600 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", lockAddr, time.Second)
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				opened.Add(1)
				_, _ = io.WriteString(c, head)
				gone := make(chan struct{})
				go func() { _, _ = io.Copy(io.Discard, c); close(gone) }()
				select {
				case <-gone:
				case <-stop:
				}
				_ = c.Close()
			}
		}()
	}
	time.Sleep(3 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), slowCap)
	t0 := time.Now()
	_, err = client(ls.url, akid, secret, nil).ListKeys(ctx, &awskms.ListKeysInput{})
	took := time.Since(t0)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			fmt.Printf("    the signed client was not answered within %s: locked out\n", slowCap)
		} else {
			fmt.Printf("    the signed client failed after %s: %v\n", took.Round(time.Millisecond), err)
		}
	} else {
		fmt.Printf("    the signed client was answered in %s (%d attack connections opened so far)\n", took.Round(time.Millisecond), opened.Load())
	}
	lrss, lhwm := procStatus(ls.cmd.Process.Pid)
	fmt.Printf("    that server's RSS %.1f MiB, peak %.1f MiB\n", lrss, lhwm)
	close(stop)
	wg.Wait()

	fmt.Printf("\nsummary: peak RSS %.1f MiB from %.1f MiB at start (%+.1f MiB; target < +64 MiB); "+
		"slow body %s, slow headers %s (target <= 30 s); signed client under the fd-limit attack: ",
		hwm, base, hwm-base, kept(body), kept(hdrs))
	if err != nil {
		fmt.Println("not answered")
	} else {
		fmt.Printf("answered in %s\n", took.Round(time.Millisecond))
	}
	return nil
}
