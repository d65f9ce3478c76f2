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

// Package controllers holds rekey's reconcilers and their envtest suite.
//
// The KeyRotation reconciler re-encrypts the ciphertext blobs held in the
// Secrets of its namespace; ../docs/design.md describes how.
package controllers

// RBAC for the manager, generated into config/rbac/role.yaml by
// 'make manifests'. Least privilege: no wildcards.
//
// KeyRotations are watched and their status patched (never updated); no
// finalizers are used. Secrets are listed page by page, read again on a
// conflict, and written with Update (the keystore Secret too).
//
// +kubebuilder:rbac:groups=rekey.dev,resources=keyrotations,verbs=get;list;watch
// +kubebuilder:rbac:groups=rekey.dev,resources=keyrotations/status,verbs=get;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;update
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
