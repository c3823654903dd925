package journal

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// checkLocalDisk refuses a folder on a network file system. SQLite's WAL
// mode keeps its index in shared memory (the -shm file, mapped by every
// connection) and relies on POSIX locks; neither works across the hosts
// of a network file system, where the journal can be corrupted
// (sqlite.org/wal.html, "WAL does not work over a network filesystem").
func checkLocalDisk(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("find the file system of %s: %w", dir, err)
	}
	if name, ok := networkFS(int64(st.Type)); ok {
		return fmt.Errorf("%s is on a network file system (%s): the journal needs a local disk for its write-ahead log", dir, name)
	}
	return nil
}

// networkFS names the network file systems by their statfs magic number
// (linux/magic.h). FUSE is not listed: it serves local file systems too.
func networkFS(magic int64) (string, bool) {
	switch magic {
	case unix.NFS_SUPER_MAGIC:
		return "nfs", true
	case unix.SMB_SUPER_MAGIC:
		return "smb", true
	case unix.SMB2_SUPER_MAGIC:
		return "smb2", true
	case unix.CIFS_SUPER_MAGIC:
		return "cifs", true
	case unix.V9FS_MAGIC:
		return "9p", true
	case unix.AFS_SUPER_MAGIC, unix.AFS_FS_MAGIC:
		return "afs", true
	case unix.CEPH_SUPER_MAGIC:
		return "ceph", true
	case unix.CODA_SUPER_MAGIC:
		return "coda", true
	case unix.NCP_SUPER_MAGIC:
		return "ncp", true
	}
	return "", false
}
