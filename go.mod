module github.com/station-dev/station

go 1.26.0

require (
	github.com/cavaliergopher/grab/v3 v3.0.1
	github.com/creack/pty v1.1.24
	github.com/mattn/go-sqlite3 v1.14.32
	go.bug.st/serial v1.6.4
	golang.org/x/sync v0.24.0
	golang.org/x/sys v0.49.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/creack/goselect v0.1.2 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/pgx/v5 v5.12.0
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	golang.org/x/text v0.41.0 // indirect
)
