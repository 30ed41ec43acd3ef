// Package config defines Pico's configuration: one struct per component,
// YAML tags matching the documented keys, flags registered next to each
// struct (`a.b_c` in YAML is `--a.b-c`), defaults in Default functions and
// validation that reports every problem at once.
//
// Precedence is defaults < YAML file (--config.path, optionally expanded
// with --config.expand-env) < flags. Unknown YAML keys are errors.
package config
