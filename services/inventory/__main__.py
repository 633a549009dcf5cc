from services.inventory.app import main

main()
