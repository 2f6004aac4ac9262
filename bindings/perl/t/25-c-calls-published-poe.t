#!/usr/bin/perl
# An existing POE session published (t/lib/publisher_poe.pl, which also
# hosts the broker) and called from C: t/c/call_published.c, compiled
# here with the repository's header and tests/c/check.h against the
# library the binding loaded. Skipped outside a source tree (a clean
# copy of the distribution) or without a C compiler.
use strict;
use warnings;
use FindBin;
use File::Spec;
use File::Temp ();
use Test::More;
use StageBus;

my $root = File::Spec->rel2abs("$FindBin::Bin/../../..");
-e "$root/include/stagebus.h" && -e "$root/tests/c/check.h"
    or plan skip_all => 'not inside the stagebus source tree (no include/stagebus.h)';
my $cc = $ENV{CC} // 'cc';
system("$cc --version >/dev/null 2>&1") == 0 or plan skip_all => "no C compiler ($cc)";

alarm 120;

# A lib dir with the library under its SONAME, for the program's rpath.
my $tmp = File::Temp->newdir;
my $lib = $StageBus::LIBRARY;
my $soname = do {
    open my $fh, '<:raw', $lib or die "$lib: $!";
    local $/;
    my $bin = <$fh>;
    $bin =~ /\0(libstagebus\.so(?:\.\d+)*)\0/ ? $1 : 'libstagebus.so';
};
for my $name ('libstagebus.so', $soname) {
    symlink $lib, "$tmp/$name" or die "symlink $tmp/$name: $!" unless -e "$tmp/$name";
}
my $exe = "$tmp/call_published";
my $out = `$cc -std=c99 -Wall -Wextra -Werror -g -I$root/include -I$root/tests/c -o $exe $FindBin::Bin/c/call_published.c -L$tmp -lstagebus -Wl,-rpath,$tmp 2>&1`;
is($?, 0, 'call_published.c compiles') or diag($out);

my @inc = map { "-I$_" } @INC;
my $pid = open(my $pub, '-|', $^X, @inc, "$FindBin::Bin/lib/publisher_poe.pl", '--broker')
    // die "cannot start the publisher: $!";
my ($address, $ready);
while (my $line = <$pub>) {
    $address = $1 if $line =~ /^address (\S+)/;
    last if ($ready = $line =~ /^ready$/);
}
ok($address && $ready, 'the POE publisher hosts a broker and published Calc') or BAIL_OUT('no publisher');

my $tap = `$exe $address 2>&1`;
is($?, 0, 'the C program passed') or diag($tap);
like($tap, qr/^ok \d+ - add\(2, 40\)/m, 'C called add');
like($tap, qr/^ok \d+ - count\(3\): three tick emits/m, 'C got the emits of count');
like($tap, qr/^ok \d+ - boom: the die in the POE event is SB_HANDLER_FAILED/m, 'C got the die as handler_failed');
like($tap, qr/^ok \d+ - quit answered/m, 'C ended the publisher');
note($tap);

# quit ends the publisher: it must exit 0 by itself.
my $rest = do { local $/; <$pub> };
close $pub;
is($?, 0, 'the publisher exited 0 after quit') or diag($rest);
like($rest // '', qr/^stopped$/m, 'its POE::Kernel->run returned');
done_testing;
