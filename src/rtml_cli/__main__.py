from rtml_cli.entry import main

main()
