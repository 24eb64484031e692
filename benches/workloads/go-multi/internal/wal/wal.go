// Package wal is an append-only log of store mutations: each record is a length, a CRC-32C
// of the payload, and the payload; replay stops cleanly at a torn last record.
package wal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"time"
)

// Op is the kind of a mutation.
type Op byte

const (
	// OpPut stores a value.
	OpPut Op = 1
	// OpDelete removes a key.
	OpDelete Op = 2
)

// Record is one logged mutation.
type Record struct {
	Op      Op
	Key     string
	Value   []byte
	Version uint64
	Expires time.Time
	At      time.Time
}

var table = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is returned when a record's checksum does not match.
var ErrCorrupt = errors.New("wal: corrupt record")

// Encode appends the binary form of r to buf.
func Encode(buf []byte, r Record) []byte {
	var payload bytes.Buffer
	payload.WriteByte(byte(r.Op))
	writeUvarint(&payload, r.Version)
	writeVarint(&payload, unixNano(r.Expires))
	writeVarint(&payload, unixNano(r.At))
	writeUvarint(&payload, uint64(len(r.Key)))
	payload.WriteString(r.Key)
	writeUvarint(&payload, uint64(len(r.Value)))
	payload.Write(r.Value)
	var head [8]byte
	binary.LittleEndian.PutUint32(head[0:4], uint32(payload.Len()))
	binary.LittleEndian.PutUint32(head[4:8], crc32.Checksum(payload.Bytes(), table))
	buf = append(buf, head[:]...)
	return append(buf, payload.Bytes()...)
}

// Decode reads one record from rd. io.EOF means a clean end; io.ErrUnexpectedEOF a torn tail.
func Decode(rd *bufio.Reader) (Record, error) {
	var head [8]byte
	if _, err := io.ReadFull(rd, head[:]); err != nil {
		return Record{}, err
	}
	n := binary.LittleEndian.Uint32(head[0:4])
	if n > 64<<20 {
		return Record{}, fmt.Errorf("%w: length %d", ErrCorrupt, n)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(rd, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Record{}, err
	}
	if crc32.Checksum(payload, table) != binary.LittleEndian.Uint32(head[4:8]) {
		return Record{}, ErrCorrupt
	}
	p := bytes.NewReader(payload)
	var r Record
	op, err := p.ReadByte()
	if err != nil {
		return Record{}, ErrCorrupt
	}
	r.Op = Op(op)
	if r.Version, err = binary.ReadUvarint(p); err != nil {
		return Record{}, ErrCorrupt
	}
	exp, err := binary.ReadVarint(p)
	if err != nil {
		return Record{}, ErrCorrupt
	}
	at, err := binary.ReadVarint(p)
	if err != nil {
		return Record{}, ErrCorrupt
	}
	r.Expires, r.At = fromUnixNano(exp), fromUnixNano(at)
	key, err := readBytes(p)
	if err != nil {
		return Record{}, err
	}
	r.Key = string(key)
	if r.Value, err = readBytes(p); err != nil {
		return Record{}, err
	}
	return r, nil
}

// Log is an open log file.
type Log struct {
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	size int64
}

// Open opens (or creates) the log at path for appending.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Log{f: f, w: bufio.NewWriter(f), size: info.Size()}, nil
}

// Append writes r and flushes it to the file (not fsynced; Sync does that).
func (l *Log) Append(r Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	buf := Encode(nil, r)
	if _, err := l.w.Write(buf); err != nil {
		return err
	}
	l.size += int64(len(buf))
	return l.w.Flush()
}

// Sync makes the appended records durable.
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Sync()
}

// Size is the log's length in bytes.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// Close flushes and closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.w.Flush(); err != nil {
		l.f.Close()
		return err
	}
	return l.f.Close()
}

// Replay calls fn for every record in the file at path, in order. A torn last record ends the
// replay without error; a corrupt one in the middle is an error.
func Replay(path string, fn func(Record) error) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rd := bufio.NewReader(f)
	n := 0
	for {
		r, err := Decode(rd)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("record %d: %w", n+1, err)
		}
		if err := fn(r); err != nil {
			return n, err
		}
		n++
	}
}

func writeUvarint(b *bytes.Buffer, v uint64) {
	var tmp [binary.MaxVarintLen64]byte
	b.Write(tmp[:binary.PutUvarint(tmp[:], v)])
}

func writeVarint(b *bytes.Buffer, v int64) {
	var tmp [binary.MaxVarintLen64]byte
	b.Write(tmp[:binary.PutVarint(tmp[:], v)])
}

func readBytes(p *bytes.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(p)
	if err != nil || n > uint64(p.Len()) {
		return nil, ErrCorrupt
	}
	out := make([]byte, n)
	if _, err := io.ReadFull(p, out); err != nil {
		return nil, ErrCorrupt
	}
	return out, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
