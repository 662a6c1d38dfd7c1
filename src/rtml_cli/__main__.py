from rtml_cli.cli import main

main()
