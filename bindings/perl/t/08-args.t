#!/usr/bin/perl
# Args round-trip exactly: nested hashes and arrays of strings (ASCII
# and not, NUL characters included), numbers (int64 limits, floats),
# undef, booleans and binary bytes, through the library alone, through a
# local stage and through a broker (an echo handler decodes and
# re-encodes what it got). Text and bytes stay apart: plain scalars are
# text, StageBus::bytes marks bytes. Keys cannot hold a NUL.
use strict;
use warnings;
use utf8;

use Test::More;
use Scalar::Util qw(blessed);
use B ();
use StageBus;

alarm 60;

# The exact shape of a value: types included.
sub shape {
    my ($v) = @_;
    return 'null' unless defined $v;
    if (ref $v eq 'HASH')  { return '{' . join(',', map { "$_=>" . shape($v->{$_}) } sort keys %$v) . '}' }
    if (ref $v eq 'ARRAY') { return '[' . join(',', map { shape($_) } @$v) . ']' }
    if (blessed($v) && $v->isa('StageBus::Bytes')) { return 'bytes:' . unpack('H*', $v->octets) }
    { no warnings; return "bool:" . ($v ? 1 : 0) if defined &builtin::is_bool && builtin::is_bool($v) }
    my $kind = StageBus::_number_kind($v);
    return "$kind:" . ($kind eq 'float' ? sprintf('%.17g', $v) : $v) if $kind;
    my $s = $v;
    utf8::encode($s);
    return 'str:' . unpack('H*', $s);
}

my $binary = join '', map { chr } 0 .. 255;
my %cases = (
    empty      => {},
    null       => { v => undef },
    ints       => { zero => 0, one => 1, neg => -42, max => 9223372036854775807, min => -9223372036854775808 },
    floats     => { half => 0.5, neg => -1.25, big => 1e300, tiny => 5e-324, third => 1 / 3, whole => 2.0 },
    strings    => { ascii => 'hello', empty => '', digits => '42', spaced => ' 1', latin1 => "caf\x{e9}",
                    wide => 'ünïcödé ☃ 😀', newline => "a\nb" },
    bools      => { t => !!1, f => !!0, cmp => (1 < 2), ref_t => \1, ref_f => \0 },
    bytes      => { all => StageBus::bytes($binary), empty => StageBus::bytes(''), nul => StageBus::bytes("\0"),
                    ascii => StageBus::bytes('abc') },
    nested     => { list => [1, 'two', [3, [4.5, undef]], { five => 5 }], map => { a => { b => { c => [] } } } },
    nul_text   => { mid => "a\0b", only => "\0", ends => "\0x\0", wide => "ü\0☃\0😀",
                    list => ["\0", ["a\0"]], map => { k => "\0\0" } },
    keys       => { 'ключ' => 'значение', '' => 'empty key', 'a b' => 1 },
    big        => { blob => StageBus::bytes(join '', map { chr($_ % 256) } 1 .. 200_000), text => 'x' x 100_000 },
);
# \1 and \0 arrive as booleans.
my %expect = (bools => { t => !!1, f => !!0, cmp => !!1, ref_t => !!1, ref_f => !!0 });

for my $name (sort keys %cases) {
    my $want = shape($expect{$name} // $cases{$name});
    is(shape(StageBus::roundtrip($cases{$name})), $want, "library round-trip: $name");
}

# A number that was printed stays a number; a numeric string stays text.
{
    my $n = 7;
    my $printed = "$n";
    my $s = '7';
    my $used = $s + 0;
    is(shape(StageBus::roundtrip({ n => $n, s => $s })), '{n=>int:7,s=>str:37}', 'printing a number or adding a string keeps their types');
    my ($f, $i) = (2.5, 5);
    my $cmp = ($f == 2) + ($f > 1) + int($f);
    my $g = $i * 1.5 + sqrt($i);
    is(shape(StageBus::roundtrip({ f => $f, i => $i })), '{f=>float:2.5,i=>int:5}',
        'a float compared with integers stays a float; an int used in float arithmetic stays an int');
}

# What comes back compares as expected in plain Perl.
{
    my $got = StageBus::roundtrip($cases{bytes});
    ok($got->{all} eq $binary, 'bytes compare eq their octets');
    is(length("$got->{all}"), 256, '... and have their length');
    is($got->{all}->length, 256, '... also through ->length');
    my $s = StageBus::roundtrip($cases{strings});
    is($s->{wide}, 'ünïcödé ☃ 😀', 'text comes back as the same characters');
    is($s->{latin1}, "caf\x{e9}", 'a latin-1 string without the utf8 flag is the same text');
    my $u = "caf\x{e9}";
    utf8::upgrade($u);
    is(shape(StageBus::roundtrip({ s => $u })), shape({ s => "caf\x{e9}" }), 'the utf8 flag does not change what is sent');
}

# Refused.
for my $bad (
    [code  => { c => sub { } },          qr/cannot send a CODE reference/],
    [glob  => { g => \*STDOUT },         qr/cannot send a GLOB reference/],
    [nul_key => { "a\0b" => 1 },        qr/NUL/],
    [wide  => undef,                     qr/wide character/],
    )
{
    my ($what, $args, $re) = @$bad;
    my $e = do { local $@; eval { $args ? StageBus::roundtrip($args) : StageBus::bytes("\x{263a}"); 1 } ? undef : $@ };
    ok(blessed($e) && $e->is('invalid_argument') && $e->message =~ $re, "refused: $what");
}
{
    my $cycle = {};
    $cycle->{self} = $cycle;
    my $e = do { local $@; eval { StageBus::roundtrip($cycle); 1 } ? undef : $@ };
    ok(blessed($e) && $e->message =~ /nested deeper/, 'a cyclic structure is refused, not followed forever');
}

# Through a stage, local and remote: echo decodes and re-sends.
my $loop = StageBus::Loop->new;
my $echo = StageBus::Stage->new(loop => $loop, name => 'Echo', handlers => {
    echo => sub {
        my ($ctx) = @_;
        $ctx->req->emit(type => 'copy', args => $ctx->args);
        $ctx->req->return(args => { got => $ctx->args, shape => shape($ctx->args) });
    },
});
my $broker = StageBus::Broker->new(loop => $loop, listen => 'tcp://127.0.0.1:0');
my $client = StageBus::Client->new(loop => $loop, address => $broker->address);
my ($published, $remote);
$echo->publish(client => $client, session => 'Echo', on_done => sub { $published = 1 });
$client->subscribe(session => 'Echo', on_subscribed => sub { $remote = $_[1] });
$loop->run_until(sub { $published && $remote }, timeout_ms => 5000) or BAIL_OUT('no remote echo');

for my $target ([local => $echo], [remote => $remote]) {
    my ($where, $to) = @$target;
    for my $name (sort keys %cases) {
        my $want = shape($expect{$name} // $cases{$name});
        my ($ret, $copy);
        my $req = $to->request(method => 'echo', args => $cases{$name},
            on_copy => sub { $copy = shape($_[0]->args) },
            on_return => sub { $ret = $_[0]->args });
        $loop->run_until(sub { $ret }, timeout_ms => 5000);
        ok($ret && $ret->{shape} eq $want && shape($ret->{got}) eq $want && $copy eq $want,
            "$where round-trip: $name") or diag explain { want => $want, ret => $ret && $ret->{shape}, copy => $copy };
    }
}

done_testing;
