// Package syncbuf is a byte buffer that several goroutines may write to at
// once while another reads it: the collected output of a child process or a
// logger in tests, harnesses and the benchmark.
//
// Concurrency: every method takes the buffer's mutex for a copy, nothing
// more, and is safe from any goroutine.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer guarded by a mutex. The zero value is ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
