module mcphealth.dev/bench/fleet

go 1.22
