//go:build tools

// Package opentofu pins the OpenTofu release the Terraform tests build when the
// machine has no terraform (test/tools/terraform.ts).
package opentofu

import _ "github.com/opentofu/opentofu/cmd/tofu"
