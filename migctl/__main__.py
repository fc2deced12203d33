from migctl.cli import main

main()
