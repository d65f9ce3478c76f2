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

package awsapi

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// TestAuditTimeAndMillis compares the audit line's hand-written time and
// duration with what the standard library writes for the same layout.
func TestAuditTimeAndMillis(t *testing.T) {
	checkTime := func(tm time.Time) {
		t.Helper()
		want := tm.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		if got := string(appendTime(nil, tm)); got != want {
			t.Fatalf("appendTime(%v) = %q, want %q", tm, got, want)
		}
	}
	checkMillis := func(d time.Duration) {
		t.Helper()
		want := strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64)
		if got := string(appendMillis(nil, d)); got != want {
			t.Fatalf("appendMillis(%v) = %q, want %q", d, got, want)
		}
	}
	east := time.FixedZone("east", 5*3600+30*60)
	for _, tm := range []time.Time{
		time.Date(2026, 11, 30, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		time.Date(2027, 1, 1, 3, 4, 5, 6_000_000, east), // the day before in UTC
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 1_000_000, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), // five-digit years take the slow path
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		{},
		time.Now(),
	} {
		checkTime(tm)
	}
	for _, d := range []time.Duration{0, time.Microsecond, 999 * time.Microsecond, time.Millisecond, 1500 * time.Nanosecond,
		-time.Microsecond, -1500 * time.Microsecond, -500 * time.Nanosecond, 90 * time.Minute, time.Duration(1<<63 - 1), time.Duration(-1 << 63)} {
		checkMillis(d)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100000 {
		checkTime(time.Unix(rng.Int64N(253402300800), rng.Int64N(1e9)))
		checkMillis(time.Duration(rng.Int64N(1e12) - 1e11))
	}
}
