from services.accounts.app import main

main()
