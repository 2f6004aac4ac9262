#!/usr/bin/perl
# Loading: the library is found by absolute path (STAGEBUS_LIB, or the
# repository's target dir relative to the module file, never the
# current directory), its version is checked, status names match.
use strict;
use warnings;

use Test::More;
use File::Spec;
use File::Temp ();
use Cwd ();

BEGIN { use_ok('StageBus') }
use_ok('StageBus::AnyEvent');
use_ok('StageBus::POE');
use_ok($_) for qw(StageBus::POE::Proxy StageBus::POE::Publish StageBus::POE::Stage StageBus::POE::Args StageBus::POE::Callback);

ok(File::Spec->file_name_is_absolute($StageBus::LIBRARY), "loaded by absolute path: $StageBus::LIBRARY");
like(StageBus::version(), qr/^0\.1\.\d+/, 'library version ' . StageBus::version());
is(StageBus::_C::sb_strerror($StageBus::Error::CODE_OF{$_}), $_, "status $_ = $StageBus::Error::CODE_OF{$_}")
    for sort keys %StageBus::Error::CODE_OF;

(my $lib_dir = $INC{'StageBus.pm'}) =~ s{/StageBus\.pm$}{};
$lib_dir = File::Spec->rel2abs($lib_dir);

# Without STAGEBUS_LIB, from another directory and with a relative -I:
# found from the module's own location.
SKIP: {
    my ($expected) = grep { -e } map { Cwd::abs_path(File::Spec->catfile($lib_dir, '..', '..', '..', 'target', $_, 'libstagebus.so')) // () } qw(release debug);
    skip 'no target/{release,debug}/libstagebus.so next to the module', 2 unless $expected;
    my $tmp = File::Temp::tempdir(CLEANUP => 1);
    my $rel = File::Spec->abs2rel($lib_dir, $tmp);
    local $ENV{STAGEBUS_LIB};
    delete $ENV{STAGEBUS_LIB};
    my $out = `cd "$tmp" && "$^X" -I"$rel" -MStageBus -e 'print \$StageBus::LIBRARY' 2>&1`;
    is($?, 0, 'loads from another directory without STAGEBUS_LIB') or diag $out;
    like($out, qr{^/.*/target/(?:release|debug)/libstagebus\.so$}, "... found $out");
}

{
    local $ENV{STAGEBUS_LIB} = 'target/debug/libstagebus.so';
    my $out = `"$^X" -I"$lib_dir" -MStageBus -e 1 2>&1`;
    isnt($?, 0, 'a relative STAGEBUS_LIB is refused');
    like($out, qr/invalid_argument .*STAGEBUS_LIB must be an absolute path/, '... with a StageBus::Error');
}
{
    local $ENV{STAGEBUS_LIB} = '/nonexistent/libstagebus.so';
    my $out = `"$^X" -I"$lib_dir" -MStageBus -e 1 2>&1`;
    isnt($?, 0, 'a missing STAGEBUS_LIB is refused');
    like($out, qr/does not exist/, '... saying so');
}

done_testing;
