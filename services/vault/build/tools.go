//go:build tools

// Package build pins the Vault release Resin builds from its Go module.
package build

import _ "github.com/hashicorp/vault"
