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
	"bytes"
	stdjson "encoding/json"
	"errors"

	jsoniter "github.com/json-iterator/go"
)

// strictJSON decodes requests: field names match exactly (no "keyid" for
// "KeyId", as encoding/json and json-iterator's standard configuration
// would allow) and a field this server does not know is an error, so a
// request means exactly what the server understood. Duplicate names are
// refused before it runs (checkJSON): json-iterator, like encoding/json,
// would keep the last one silently.
var strictJSON = jsoniter.Config{
	EscapeHTML:             true,
	SortMapKeys:            true,
	ValidateJsonRawMessage: true,
	CaseSensitive:          true,
	DisallowUnknownFields:  true,
}.Froze()

// maxJSONDepth bounds nesting (objects and arrays): the deepest KMS request
// (CreateGrant's Constraints.EncryptionContextSubset) is three objects deep.
const maxJSONDepth = 16

// errJSON is what checkJSON returns; the caller turns it into a
// SerializationException without echoing the body.
var errJSON = errors.New("malformed JSON")

// decodeStrict decodes a request body into v: the body must be one JSON
// object with no name twice in any object (after unescaping), field names
// spelled exactly as the operation's, and nothing unknown.
func decodeStrict(body []byte, v any) error {
	if err := checkJSON(body); err != nil {
		return err
	}
	return strictJSON.Unmarshal(body, v)
}

// checkJSON walks a JSON document and reports an error for a duplicate
// name in any object (exact comparison after unescaping: in an encryption
// context "a" and "A" are two keys), nesting deeper than maxJSONDepth, or
// anything that is not JSON. It does not allocate unless a name holds an
// escape.
func checkJSON(b []byte) error {
	s := scanner{b: b}
	s.space()
	if err := s.value(0); err != nil {
		return err
	}
	s.space()
	if s.i != len(s.b) {
		return errJSON
	}
	return nil
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) value(depth int) error {
	if s.i >= len(s.b) {
		return errJSON
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		_, _, err := s.str()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
				s.i += len(lit)
				return nil
			}
		}
		return errJSON
	}
}

// name is an object member's name: raw bytes between the quotes, and
// whether they hold an escape.
type name struct {
	raw     []byte
	escaped bool
}

func (n name) String() string {
	if !n.escaped {
		return string(n.raw)
	}
	var s string
	q := make([]byte, 0, len(n.raw)+2)
	q = append(append(append(q, '"'), n.raw...), '"')
	_ = stdjson.Unmarshal(q, &s) // the scanner already checked the escapes
	return s
}

func sameName(a, b name) bool {
	if !a.escaped && !b.escaped {
		return bytes.Equal(a.raw, b.raw)
	}
	return a.String() == b.String()
}

func (s *scanner) object(depth int) error {
	if depth > maxJSONDepth {
		return errDepth
	}
	s.i++ // {
	var small [16]name
	names := small[:0]
	var seen map[string]struct{} // once an object has many names
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return errJSON
		}
		raw, escaped, err := s.str()
		if err != nil {
			return err
		}
		n := name{raw: raw, escaped: escaped}
		if seen == nil && len(names) == len(small) {
			seen = make(map[string]struct{}, 2*len(small))
			for _, m := range names {
				seen[m.String()] = struct{}{}
			}
		}
		if seen != nil {
			k := n.String()
			if _, dup := seen[k]; dup {
				return errDuplicate
			}
			seen[k] = struct{}{}
		} else {
			for _, m := range names {
				if sameName(m, n) {
					return errDuplicate
				}
			}
			names = append(names, n)
		}
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return errJSON
		}
		s.i++
		s.space()
		if err := s.value(depth); err != nil {
			return err
		}
		if done, err := s.next('}'); err != nil || done {
			return err
		}
	}
}

// next reads the separator after an object member or array element: ','
// when more follow, or end, which closes the object or array.
func (s *scanner) next(end byte) (done bool, err error) {
	s.space()
	if s.i >= len(s.b) {
		return false, errJSON
	}
	switch s.b[s.i] {
	case ',':
		s.i++
		return false, nil
	case end:
		s.i++
		return true, nil
	}
	return false, errJSON
}

// errDepth is nesting deeper than maxJSONDepth.
var errDepth = errors.New("the JSON nests too deeply")

// errDuplicate is a name given twice in one object.
var errDuplicate = errors.New("a name appears twice in one JSON object")

func (s *scanner) array(depth int) error {
	if depth > maxJSONDepth {
		return errDepth
	}
	s.i++ // [
	s.space()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		s.space()
		if err := s.value(depth); err != nil {
			return err
		}
		if done, err := s.next(']'); err != nil || done {
			return err
		}
	}
}

// str scans a string and returns its raw contents.
func (s *scanner) str() (raw []byte, escaped bool, err error) {
	s.i++ // "
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw = s.b[start:s.i]
			s.i++
			return raw, escaped, nil
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				return nil, false, errJSON
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return nil, false, errJSON
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !isHexDigit(h) {
						return nil, false, errJSON
					}
				}
				s.i += 6
			default:
				return nil, false, errJSON
			}
		case c < 0x20:
			return nil, false, errJSON
		default:
			s.i++
		}
	}
	return nil, false, errJSON
}

func isHexDigit(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (s *scanner) number() error {
	start := s.i
	if s.b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return errJSON
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return errJSON
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return errJSON
		}
	}
	if s.i == start {
		return errJSON
	}
	return nil
}
