#!/usr/bin/perl
# The distribution's MANIFEST is the file list: everything it names
# exists, and every module, test and test helper is in it (a file left
# out would be missing from 'make dist' and an installed copy).
use strict;
use warnings;
use FindBin;
use File::Find ();
use Test::More;

my $top = "$FindBin::Bin/..";
open my $fh, '<', "$top/MANIFEST" or die "MANIFEST: $!";
my %listed = map { chomp; s/\s.*//; ($_ => 1) } grep { /\S/ && !/^#/ } <$fh>;
ok(-e "$top/$_", "$_ exists") for sort keys %listed;

my @files;
for my $dir (qw(lib t)) {
    File::Find::find({ no_chdir => 1, wanted => sub {
        return unless -f;
        (my $rel = $File::Find::name) =~ s{^\Q$top\E/}{};
        push @files, $rel;
    } }, "$top/$dir");
}
ok($listed{$_}, "$_ is in MANIFEST") for sort @files;
ok($listed{$_}, "$_ is in MANIFEST") for qw(Makefile.PL MANIFEST);
done_testing;
