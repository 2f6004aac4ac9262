package StageBus::POE::Args;

use strict;
use warnings;

our $VERSION = '0.01';

# POE event arguments -> stagebus args: one plain hash ref is the args
# themselves (named); anything else is positional, sent as ARG0, ARG1, ...
sub to_args {
    my (@values) = @_;
    return { %{ $values[0] } } if @values == 1 && ref $values[0] eq 'HASH';
    return { map { ("ARG$_" => $values[$_]) } 0 .. $#values };
}

# stagebus args -> POE event arguments: ARG0 .. ARGn (all of them, and
# nothing else) are the positional values in order; no args, none; any
# other args, the hash ref as the one argument.
sub from_args {
    my ($h) = @_;
    return () if !$h || !%$h;
    my $n = keys %$h;
    for my $i (0 .. $n - 1) {
        return ($h) unless exists $h->{"ARG$i"};
    }
    return map { $h->{"ARG$_"} } 0 .. $n - 1;
}

1;

__END__

=head1 NAME

StageBus::POE::Args - POE event arguments as stagebus args and back

=head1 SYNOPSIS

    use StageBus::POE::Args;

    my $args = StageBus::POE::Args::to_args('string', 1);    # { ARG0 => 'string', ARG1 => 1 }
    my @values = StageBus::POE::Args::from_args($args);      # ('string', 1)
    my ($h) = StageBus::POE::Args::from_args({ name => 'Ann' });  # the hash itself
    print "@values $h->{name}\n";

=head1 DESCRIPTION

stagebus args are named (a map). POE events take positional arguments
(C<ARG0>, C<ARG1>, ...). The proxy sessions of L<StageBus::POE::Proxy>
and the published sessions of L<StageBus::POE::Publish> convert between
them the same way, so that a C or Rust program sees the same args:

=over

=item *

a post with exactly one argument that is a plain hash ref sends that
hash as the args (named);

=item *

any other post sends its arguments as the keys C<ARG0>, C<ARG1>, ...
(none: no args);

=item *

arriving args whose keys are exactly C<ARG0> .. C<ARGn> become the
event's positional arguments in order; no args, no arguments; any other
args arrive as one hash ref in C<ARG0>.

=back

=cut
