#!/usr/bin/perl
# Unix signals taken on the loop: on_unix_signals runs its code on the
# loop with the signal's name, where it may stop the loop; %SIG handlers
# see nothing meanwhile. clear_unix_signals gives the signal back to its
# %SIG handler. Bad lists die with invalid_argument.
use strict;
use warnings;

use Test::More;
use POSIX ();
use Scalar::Util qw(blessed);
use StageBus;

alarm 60;

my $loop = StageBus::Loop->new;
my ($perl_handler, @seen) = (0);
local $SIG{USR1} = sub { $perl_handler++ };
$loop->on_unix_signals([qw(USR1 SIGUSR2)], sub {
    my ($name) = @_;
    push @seen, $name;
    $loop->stop if $name eq 'USR2';
});
kill USR1 => $$;
kill USR2 => $$;
$loop->run;
is_deeply(\@seen, [qw(USR1 USR2)], 'both taken on the loop, by name, in order');
is($perl_handler, 0, 'the %SIG handler saw nothing meanwhile');

# A replacing watch by number; the code may end its own watch.
my $runs = 0;
$loop->on_unix_signals([POSIX::SIGHUP()], sub { $runs++; $loop->clear_unix_signals; $loop->stop });
local $SIG{HUP} = sub { $perl_handler++ };
kill HUP => $$;
$loop->run;
is($runs, 1, 'a number works too; the code ended its watch');
kill USR1 => $$;
select(undef, undef, undef, 0.05) for 1 .. 2;
is($perl_handler, 1, 'after the watch, %SIG handlers have their signals again');

for my $bad ([], ['NOSUCH'], ['KILL'], ['SEGV'], [0], 'TERM') {
    my $ok = eval { $loop->on_unix_signals($bad, sub {}); 1 };
    my $e = $@;
    ok(!$ok && blessed($e) && $e->is('invalid_argument'),
        'refused: ' . (ref $bad ? "[@$bad]" : $bad)) or diag $e;
}
my $ok = eval { $loop->on_unix_signals(['TERM'], 'not code'); 1 };
ok(!$ok && blessed($@) && $@->is('invalid_argument'), 'a handler that is no code ref is refused');

$loop->on_unix_signals(['USR2'], sub {});
$loop->destroy;
$perl_handler = 0;
local $SIG{USR2} = sub { $perl_handler++ };
kill USR2 => $$;
select(undef, undef, undef, 0.05) for 1 .. 2;
is($perl_handler, 1, 'destroy ends the watch');

done_testing;
