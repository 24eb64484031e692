// Package store is a sharded in-memory key-value store with per-key versions and expiry.
package store

import (
	"errors"
	"hash/fnv"
	"sort"
	"sync"
	"time"
)

// ErrNotFound is returned for a key that is absent or expired.
var ErrNotFound = errors.New("store: key not found")

// ErrConflict is returned when a conditional write sees another version.
var ErrConflict = errors.New("store: version conflict")

// Item is one stored value.
type Item struct {
	Key      string    `json:"key"`
	Value    []byte    `json:"value"`
	Version  uint64    `json:"version"`
	Expires  time.Time `json:"expires,omitempty"`
	Modified time.Time `json:"modified"`
}

func (it *Item) expired(now time.Time) bool {
	return !it.Expires.IsZero() && !now.Before(it.Expires)
}

type shard struct {
	mu    sync.RWMutex
	items map[string]*Item
}

// Store holds the items in a fixed number of shards, each with its own lock.
type Store struct {
	shards []*shard
	clock  func() time.Time
	mu     sync.Mutex
	seq    uint64
}

// New makes a store with n shards (at least one).
func New(n int, clock func() time.Time) *Store {
	if n < 1 {
		n = 1
	}
	if clock == nil {
		clock = time.Now
	}
	s := &Store{shards: make([]*shard, n), clock: clock}
	for i := range s.shards {
		s.shards[i] = &shard{items: make(map[string]*Item)}
	}
	return s
}

func (s *Store) shardFor(key string) *shard {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return s.shards[h.Sum32()%uint32(len(s.shards))]
}

func (s *Store) nextVersion() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.seq
}

// Get returns a copy of the item under key.
func (s *Store) Get(key string) (Item, error) {
	sh := s.shardFor(key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	it, ok := sh.items[key]
	if !ok || it.expired(s.clock()) {
		return Item{}, ErrNotFound
	}
	out := *it
	out.Value = append([]byte(nil), it.Value...)
	return out, nil
}

// Put stores value under key. With ifVersion > 0 the write only happens when the current
// version is ifVersion. A ttl of zero never expires.
func (s *Store) Put(key string, value []byte, ttl time.Duration, ifVersion uint64) (Item, error) {
	sh := s.shardFor(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := s.clock()
	cur, ok := sh.items[key]
	if ok && cur.expired(now) {
		ok = false
	}
	if ifVersion > 0 && (!ok || cur.Version != ifVersion) {
		return Item{}, ErrConflict
	}
	it := &Item{
		Key:      key,
		Value:    append([]byte(nil), value...),
		Version:  s.nextVersion(),
		Modified: now,
	}
	if ttl > 0 {
		it.Expires = now.Add(ttl)
	}
	sh.items[key] = it
	return *it, nil
}

// Restore puts an item back exactly as it was logged (used when replaying the log).
func (s *Store) Restore(it Item) {
	sh := s.shardFor(it.Key)
	sh.mu.Lock()
	sh.items[it.Key] = &it
	sh.mu.Unlock()
	s.mu.Lock()
	if it.Version > s.seq {
		s.seq = it.Version
	}
	s.mu.Unlock()
}

// Delete removes key; deleting an absent key is ErrNotFound.
func (s *Store) Delete(key string) error {
	sh := s.shardFor(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	it, ok := sh.items[key]
	if !ok || it.expired(s.clock()) {
		return ErrNotFound
	}
	delete(sh.items, key)
	return nil
}

// Keys lists the live keys with the given prefix, sorted, at most limit of them (0: all).
func (s *Store) Keys(prefix string, limit int) []string {
	now := s.clock()
	var keys []string
	for _, sh := range s.shards {
		sh.mu.RLock()
		for k, it := range sh.items {
			if len(k) >= len(prefix) && k[:len(prefix)] == prefix && !it.expired(now) {
				keys = append(keys, k)
			}
		}
		sh.mu.RUnlock()
	}
	sort.Strings(keys)
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	return keys
}

// Sweep drops expired items and says how many went.
func (s *Store) Sweep() int {
	now := s.clock()
	n := 0
	for _, sh := range s.shards {
		sh.mu.Lock()
		for k, it := range sh.items {
			if it.expired(now) {
				delete(sh.items, k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// Stats counts the live items and their bytes.
func (s *Store) Stats() (items int, bytes int) {
	now := s.clock()
	for _, sh := range s.shards {
		sh.mu.RLock()
		for k, it := range sh.items {
			if !it.expired(now) {
				items++
				bytes += len(k) + len(it.Value)
			}
		}
		sh.mu.RUnlock()
	}
	return items, bytes
}
