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

// Package argocdhealth runs an Argo CD custom health check (a Lua script)
// on an object the way Argo CD does, so rekey's health check
// (config/argocd) is tested against the interpreter Argo CD uses
// (github.com/yuin/gopher-lua) and in the environment Argo CD gives a
// custom health check from argocd-cm: the base, package and table
// libraries only (no string, os or io), the object as the global obj, a
// one-second limit, and a table with status and message as the result.
// It is for tests: rekey itself never runs Lua.
package argocdhealth

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// Status is a health status as Argo CD reads it from the script's result.
type Status struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// validStatuses are the health statuses Argo CD accepts; any other makes
// it report Unknown.
var validStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Suspended": true, "Degraded": true, "Missing": true, "Unknown": true,
}

// ReadScript reads a health check script.
func ReadScript(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the health check: %w", err)
	}
	return string(b), nil
}

// Evaluate runs script with obj (an object as its JSON decodes into
// map[string]any) as the global obj and returns the health it reports.
// An invalid status is an error here (Argo CD would show Unknown), so a
// fixture cannot pass by accident.
func Evaluate(script string, obj map[string]any) (Status, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return Status{}, fmt.Errorf("opening the Lua library %q: %w", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return Status{}, fmt.Errorf("the health check failed: %w", err)
	}
	ret := l.Get(-1)
	t, ok := ret.(*lua.LTable)
	if !ok {
		return Status{}, fmt.Errorf("the health check returned a %s, want a table", ret.Type())
	}
	var st Status
	for k, v := range map[string]*string{"status": &st.Status, "message": &st.Message} {
		switch lv := t.RawGetString(k).(type) {
		case lua.LString:
			*v = string(lv)
		case *lua.LNilType:
		default:
			return Status{}, fmt.Errorf("the health check's %s is a %s, want a string", k, lv.Type())
		}
	}
	if !validStatuses[st.Status] {
		return Status{}, fmt.Errorf("the health check returned status %q, which Argo CD reads as Unknown", st.Status)
	}
	return st, nil
}

// toLua converts a decoded JSON value into Lua values, as Argo CD does:
// objects become tables with string keys, arrays become sequences.
func toLua(l *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case float64:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case int:
		return lua.LNumber(x)
	case json.Number:
		return lua.LString(x)
	case []any:
		t := l.CreateTable(len(x), 0)
		for _, e := range x {
			t.Append(toLua(l, e))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetH(lua.LString(k), toLua(l, e))
		}
		return t
	}
	return lua.LNil
}

// ConfigMapKey is the argocd-cm key under which Argo CD reads a custom
// health check for rekey.dev/KeyRotation.
const ConfigMapKey = "resource.customizations.health.rekey.dev_KeyRotation"

// configMapFor is the argocd-cm patch (config/argocd/argocd-cm.yaml) that
// installs script.
func configMapFor(script string) string {
	var b strings.Builder
	b.WriteString(`# Merge into Argo CD's argocd-cm ConfigMap to give KeyRotations a health
# status (docs/gitops.md). Generated from rekey.dev/KeyRotation/health.lua
# by: go test ./internal/argocdhealth -run TestConfigMapCarriesTheScript -update
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
  ` + ConfigMapKey + `: |
`)
	for line := range strings.Lines(script) {
		if strings.TrimSpace(line) == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString("    " + line)
	}
	return b.String()
}
