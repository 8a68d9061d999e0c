from spane_cli.cli.app import main

main()
