#!/usr/bin/perl
# Every module's POD has a SYNOPSIS, and it runs: each SYNOPSIS is
# extracted, unindented and run as a program (with this test's @INC and
# library), which must exit 0 within the time limit.
use strict;
use warnings;
use FindBin;
use File::Find ();
use File::Temp ();
use Test::More;

my $lib = "$FindBin::Bin/../lib";
my @modules;
File::Find::find(sub { push @modules, $File::Find::name if /\.pm\z/ }, $lib);
@modules = sort @modules;
ok(@modules >= 10, 'modules found') or BAIL_OUT("no modules under $lib");

my @inc = map { "-I$_" } grep { !ref } @INC;

for my $file (@modules) {
    (my $name = $file) =~ s{^\Q$lib\E/}{};
    open my $fh, '<', $file or die "$file: $!";
    my $pod = do { local $/; <$fh> };
    my ($synopsis) = $pod =~ /^=head1 SYNOPSIS\n(.*?)^=head1/ms;
    ok(defined $synopsis && $synopsis =~ /\S/, "$name has a SYNOPSIS") or next;
    ok($pod =~ /^=head1 DESCRIPTION/m, "$name has a DESCRIPTION");
    my @lines = split /\n/, $synopsis;
    my ($indent) = sort { length $a <=> length $b } map { /^(\s+)\S/ ? $1 : () } @lines;
    $indent //= '';
    my $code = join "\n", map { s/^\Q$indent\E//r } @lines;
    my $tmp = File::Temp->new(SUFFIX => '.pl');
    print $tmp "use strict; use warnings;\n#line 1 \"$name SYNOPSIS\"\n$code\n";
    close $tmp;
    my $out = `timeout 60 $^X @inc $tmp 2>&1`;
    is($?, 0, "$name: the SYNOPSIS runs") or diag($out);
}
done_testing;
