package journal

import "testing"

func TestNetworkFS(t *testing.T) {
	tests := []struct {
		name     string
		magic    int64
		wantName string
		wantNet  bool
	}{
		{"nfs", 0x6969, "nfs", true},
		{"cifs", 0xff534d42, "cifs", true},
		{"smb2", 0xfe534d42, "smb2", true},
		{"9p", 0x01021997, "9p", true},
		{"ceph", 0x00c36400, "ceph", true},
		{"ext4", 0xef53, "", false},
		{"xfs", 0x58465342, "", false},
		{"btrfs", 0x9123683e, "", false},
		{"tmpfs", 0x01021994, "", false},
		{"fuse", 0x65735546, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, ok := networkFS(tt.magic)
			if name != tt.wantName || ok != tt.wantNet {
				t.Errorf("networkFS(%#x) = %q, %v, want %q, %v", tt.magic, name, ok, tt.wantName, tt.wantNet)
			}
		})
	}
	if err := checkLocalDisk(t.TempDir()); err != nil {
		t.Errorf("checkLocalDisk(TempDir) = %v, want nil: the tests need a local disk", err)
	}
}
