from selab.cli import main

main()
