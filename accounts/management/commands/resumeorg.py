from accounts.management.commands import pauseorg


class Command(pauseorg.Command):
    help = "Resumes a paused organization: its keys work again from the next request."
    paused = False
