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

package kms

import "strings"

// ARN is an ARN's parts: arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE.
type ARN struct {
	Partition, Service, Region, Account, Resource string
}

// SplitARN splits an ARN into its six parts (the resource may hold ':'),
// without allocating: it is on every request's path.
func SplitARN(s string) (ARN, bool) {
	var a ARN
	rest, ok := strings.CutPrefix(s, "arn:")
	for _, p := range []*string{&a.Partition, &a.Service, &a.Region, &a.Account} {
		if !ok {
			return ARN{}, false
		}
		*p, rest, ok = strings.Cut(rest, ":")
	}
	if !ok {
		return ARN{}, false
	}
	a.Resource = rest
	return a, true
}
