//go:build race

package thethings_test

const raceEnabled = true
