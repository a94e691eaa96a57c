from cti_bridge.cli.app import main

main()
