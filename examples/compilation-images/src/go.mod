module example.com/compilation

go 1.19
