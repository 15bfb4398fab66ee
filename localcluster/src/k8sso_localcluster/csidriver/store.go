package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
)

// Volume is what the driver records about a volume; its data is a directory.
type Volume struct {
	ID            string              `json:"id"`
	Name          string              `json:"name"`
	CapacityBytes int64               `json:"capacityBytes"`
	Parameters    map[string]string   `json:"parameters,omitempty"`
	SourceSnap    string              `json:"sourceSnapshot,omitempty"`
	SourceVolume  string              `json:"sourceVolume,omitempty"`
	Topology      []map[string]string `json:"topology,omitempty"`
}

// Snapshot is what the driver records about a snapshot; its data is a copy of the volume's directory.
type Snapshot struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	SourceVolumeID string `json:"sourceVolumeId"`
	SizeBytes      int64  `json:"sizeBytes"`
	CreatedNanos   int64  `json:"createdNanos"`
}

// Store keeps volumes under <dir>/volumes/<id>/{meta.json,data} and snapshots under <dir>/snapshots/<id>/.
type Store struct {
	dir string
	mu  sync.Mutex
}

// ErrNotFound is returned for an unknown volume or snapshot.
var ErrNotFound = errors.New("not found")

// OpenStore creates the store's directories.
func OpenStore(dir string) (*Store, error) {
	for _, sub := range []string{"volumes", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	return &Store{dir: dir}, nil
}

// IDFor derives a stable ID from a CO-given name, so that a retried create finds its earlier result.
func IDFor(prefix, name string) string {
	sum := sha256.Sum256([]byte(name))
	return prefix + hex.EncodeToString(sum[:12])
}

func (s *Store) volumeDir(id string) string {
	return filepath.Join(s.dir, "volumes", filepath.Base(id))
}
func (s *Store) snapshotDir(id string) string {
	return filepath.Join(s.dir, "snapshots", filepath.Base(id))
}

// VolumeData is the directory a volume's data lives in (what a node bind-mounts).
func (s *Store) VolumeData(id string) string { return filepath.Join(s.volumeDir(id), "data") }

// SnapshotData is the directory holding a snapshot's copy.
func (s *Store) SnapshotData(id string) string { return filepath.Join(s.snapshotDir(id), "data") }

func readMeta(dir string, into any) error {
	raw, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if errors.Is(err, os.ErrNotExist) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, into)
}

func writeMeta(dir string, value any) error {
	raw, err := json.MarshalIndent(value, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".meta.json.tmp")
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "meta.json"))
}

// GetVolume reads a volume's record.
func (s *Store) GetVolume(id string) (*Volume, error) {
	v := &Volume{}
	if id == "" {
		return nil, ErrNotFound
	}
	return v, readMeta(s.volumeDir(id), v)
}

// GetSnapshot reads a snapshot's record.
func (s *Store) GetSnapshot(id string) (*Snapshot, error) {
	snap := &Snapshot{}
	if id == "" {
		return nil, ErrNotFound
	}
	return snap, readMeta(s.snapshotDir(id), snap)
}

// copyTree copies the contents of src into dst (which exists), keeping modes and owners.
func copyTree(src, dst string) error {
	out, err := exec.Command("cp", "-a", "--", src+"/.", dst+"/").CombinedOutput()
	if err != nil {
		return fmt.Errorf("copy %s: %v: %s", src, err, out)
	}
	return nil
}

// PutVolume creates a volume's directory (filled from fill, if given) and then its record.
func (s *Store) PutVolume(v *Volume, fill string) error {
	dir := s.volumeDir(v.ID)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o777); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(dir, "data"), 0o777); err != nil { // any pod user may write, as with hostPath
		return err
	}
	if fill != "" {
		if err := copyTree(fill, filepath.Join(dir, "data")); err != nil {
			_ = os.RemoveAll(dir)
			return err
		}
	}
	return writeMeta(dir, v)
}

// UpdateVolume rewrites a volume's record.
func (s *Store) UpdateVolume(v *Volume) error { return writeMeta(s.volumeDir(v.ID), v) }

// DeleteVolume removes a volume's record and data.
func (s *Store) DeleteVolume(id string) error { return os.RemoveAll(s.volumeDir(id)) }

// PutSnapshot copies the source volume's data, then writes the snapshot's record.
func (s *Store) PutSnapshot(snap *Snapshot) error {
	dir := s.snapshotDir(snap.ID)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	if err := copyTree(s.VolumeData(snap.SourceVolumeID), filepath.Join(dir, "data")); err != nil {
		_ = os.RemoveAll(dir)
		return err
	}
	return writeMeta(dir, snap)
}

// DeleteSnapshot removes a snapshot's record and data.
func (s *Store) DeleteSnapshot(id string) error { return os.RemoveAll(s.snapshotDir(id)) }

// Snapshots lists every snapshot, oldest first (a stable order for paging).
func (s *Store) Snapshots() ([]*Snapshot, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, "snapshots"))
	if err != nil {
		return nil, err
	}
	var snaps []*Snapshot
	for _, e := range entries {
		if snap, err := s.GetSnapshot(e.Name()); err == nil {
			snaps = append(snaps, snap)
		}
	}
	sort.Slice(snaps, func(i, j int) bool {
		if snaps[i].CreatedNanos != snaps[j].CreatedNanos {
			return snaps[i].CreatedNanos < snaps[j].CreatedNanos
		}
		return snaps[i].ID < snaps[j].ID
	})
	return snaps, nil
}
