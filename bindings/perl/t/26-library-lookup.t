#!/usr/bin/perl
# How an installed StageBus finds an installed libstagebus: a copy of the
# modules outside any source tree, the library in a directory of the
# loader's path (LD_LIBRARY_PATH), no STAGEBUS_LIB: found through
# FFI::CheckLib, and without FFI::CheckLib by the module's own search;
# STAGEBUS_LIB still wins; nothing found is a clear error.
use strict;
use warnings;
use FindBin;
use File::Copy ();
use File::Find ();
use File::Path ();
use File::Temp ();
use Test::More;
use StageBus;

my $tmp = File::Temp->newdir;
my $src = "$FindBin::Bin/../lib";
File::Find::find({ no_chdir => 1, wanted => sub {
    return unless /\.pm\z/;
    (my $rel = $File::Find::name) =~ s{^\Q$src\E/}{};
    (my $dir = "$tmp/lib/$rel") =~ s{/[^/]+\z}{};
    File::Path::make_path($dir);
    File::Copy::copy($File::Find::name, "$tmp/lib/$rel") or die "copy $rel: $!";
} }, $src);
mkdir "$tmp/sys" or die;
# A copy, not a link: FFI::CheckLib reports the real file.
File::Copy::copy($StageBus::LIBRARY, "$tmp/sys/libstagebus.so") or die "copy: $!";

# The program: optionally without FFI::CheckLib, prints what it loaded.
my $prog = "$tmp/which.pl";
open my $fh, '>', $prog or die "$prog: $!";
print $fh <<'PL';
BEGIN { if ($ENV{HIDE_CHECKLIB}) { unshift @INC, sub { die "hidden for the test\n" if $_[1] eq 'FFI/CheckLib.pm'; return } } }
use StageBus;
print "$StageBus::LIBRARY $StageBus::HAVE_CHECKLIB";
PL
close $fh;

sub run_perl {
    my (%o) = @_;
    local $ENV{LD_LIBRARY_PATH} = $o{ld_path} // '';
    local $ENV{STAGEBUS_LIB} = $o{env} // '';
    local $ENV{HIDE_CHECKLIB} = $o{hide} ? 1 : 0;
    local $ENV{PERL5LIB};    # only the copy
    delete $ENV{PERL5LIB};
    my $out = `cd "$tmp" && "$^X" -I"$tmp/lib" "$prog" 2>&1`;
    return ($?, $out);
}

my ($st, $out) = run_perl(ld_path => "$tmp/sys");
is($st, 0, 'an installed copy loads without STAGEBUS_LIB') or diag($out);
is($out, "$tmp/sys/libstagebus.so 1", '... the library in the loader path, found by FFI::CheckLib');

($st, $out) = run_perl(ld_path => "$tmp/sys", hide => 1);
is($st, 0, 'without FFI::CheckLib it still loads') or diag($out);
is($out, "$tmp/sys/libstagebus.so 0", '... by its own search of the loader path');

($st, $out) = run_perl(ld_path => "$tmp/sys", env => $StageBus::LIBRARY);
is($out, "$StageBus::LIBRARY 1", 'STAGEBUS_LIB wins');

SKIP: {
    my ($system) = grep { -e } map { ("$_/libstagebus.so", glob("$_/libstagebus.so.*")) }
        qw(/usr/local/lib /usr/local/lib64 /usr/lib /usr/lib64), glob('/usr/lib/*-linux-gnu');
    skip "a libstagebus is installed on this system ($system)", 2 if $system;
    ($st, $out) = run_perl();
    isnt($st, 0, 'no library anywhere: loading fails');
    like($out, qr/io .*cannot find libstagebus\.so.*STAGEBUS_LIB/s, '... naming what to do') or diag($out);
}
done_testing;
