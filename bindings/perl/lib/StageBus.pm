package StageBus;

use strict;
use warnings;
use 5.014;

our $VERSION = '0.01';

use B ();
use Carp ();
use Cwd ();
use File::Basename ();
use File::Spec ();
use Scalar::Util ();
use FFI::Platypus 2.00;
use FFI::Platypus::Buffer qw(buffer_to_scalar scalar_to_buffer);

use StageBus::Error;

# ---------------------------------------------------------------------
# Finding and loading the library

# This file's directory, made absolute now (at load time, the directory
# @INC was searched from): the library is never looked up relative to
# the current directory later.
my $MODULE_DIR = File::Basename::dirname(File::Spec->rel2abs(__FILE__));

# The installed library (its SONAME's path): scripts/install.sh writes it
# into the installed copy of this file; undef in the source tree.
my $INSTALLED_LIBRARY;

sub _find_library {
    my $env = $ENV{STAGEBUS_LIB};
    if (defined $env && length $env) {
        File::Spec->file_name_is_absolute($env)
            or StageBus::Error->throw(code => 'invalid_argument',
                message => "STAGEBUS_LIB must be an absolute path, not '$env'");
        -e $env
            or StageBus::Error->throw(code => 'io', message => "STAGEBUS_LIB: $env does not exist");
        return $env;
    }
    # Installed by scripts/install.sh: the library it installed.
    if (defined $INSTALLED_LIBRARY) {
        -e $INSTALLED_LIBRARY
            or StageBus::Error->throw(code => 'io',
                message => "the installed library $INSTALLED_LIBRARY is gone; reinstall, or set STAGEBUS_LIB");
        return $INSTALLED_LIBRARY;
    }
    # bindings/perl/lib (or bindings/perl/blib/lib, under 'make test')
    # -> the repository root: the library built there.
    my ($root, @found);
    for my $up (3, 4) {
        my $dir = Cwd::abs_path(File::Spec->catdir($MODULE_DIR, (File::Spec->updir) x $up));
        next unless defined $dir && -e File::Spec->catfile($dir, 'Cargo.toml');
        $root //= $dir;
        for my $profile (qw(release debug)) {
            my $p = File::Spec->catfile($dir, 'target', $profile, 'libstagebus.so');
            push @found, $p if -e $p;
        }
        last if @found;
    }
    # Installed (outside a source tree): the system's libstagebus.
    @found or push @found, _installed_library();
    @found or StageBus::Error->throw(code => 'io',
        message => "cannot find libstagebus.so (looked in target/release and target/debug under "
            . ($root // $MODULE_DIR)
            . ", then for an installed libstagebus"
            . ($StageBus::HAVE_CHECKLIB ? '' : ' (without FFI::CheckLib: in the usual library directories)')
            . "); build it with 'cargo build --lib', install it, or set STAGEBUS_LIB to its absolute path");
    # Both profiles built: the newer one.
    @found = sort { (stat $b)[9] <=> (stat $a)[9] } @found;
    return $found[0];
}

# An installed libstagebus: FFI::CheckLib's search (the system's library
# path, LD_LIBRARY_PATH, ...) when it is there, else the usual
# directories by hand.
our $HAVE_CHECKLIB = eval { require FFI::CheckLib; 1 } ? 1 : 0;

sub _installed_library {
    # Installed under one prefix (INSTALL_BASE=P: P/lib/perl5/StageBus.pm
    # and P/lib/libstagebus.so): the lib dir above the modules too.
    my @prefix = grep { defined && -d } map { Cwd::abs_path(File::Spec->catdir($MODULE_DIR, (File::Spec->updir) x $_)) } 1, 2;
    if ($HAVE_CHECKLIB) {
        my @libs = FFI::CheckLib::find_lib(lib => 'stagebus', libpath => \@prefix);
        return $libs[0] if @libs;
        return ();
    }
    my @dirs = (@prefix, split(/:/, $ENV{LD_LIBRARY_PATH} // ''),
        qw(/usr/local/lib /usr/local/lib64 /usr/lib /usr/lib64), glob('/usr/lib/*-linux-gnu'));
    for my $dir (grep { length } @dirs) {
        my ($lib) = grep { -e } map { File::Spec->catfile($dir, $_) } qw(libstagebus.so), glob("$dir/libstagebus.so.*");
        return $lib if $lib;
    }
    return ();
}

our $LIBRARY = _find_library();

my $ffi = FFI::Platypus->new(api => 2, lib => [$LIBRARY]);

# Handles and callback pointers are plain addresses ('opaque'); every
# status is an int.
my @FUNCTIONS = (
    [sb_strerror   => ['sint32'] => 'string'],
    [sb_last_error => [] => 'string'],
    [sb_version    => [] => 'string'],
    [sb_set_log_handler => ['opaque', 'sint32', 'opaque', 'opaque'] => 'sint32'],

    [sb_loop_new          => ['opaque*'] => 'sint32'],
    [sb_loop_free         => ['opaque'] => 'void'],
    [sb_loop_fd           => ['opaque'] => 'sint32'],
    [sb_loop_timeout_ms   => ['opaque'] => 'sint64'],
    [sb_loop_dispatch     => ['opaque'] => 'sint32'],
    [sb_loop_watch_fds    => ['opaque', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_loop_unwatch_fds  => ['opaque'] => 'sint32'],
    [sb_loop_dispatch_fd  => ['opaque', 'sint32', 'uint32'] => 'sint32'],
    [sb_loop_stop         => ['opaque'] => 'sint32'],
    [sb_loop_on_unix_signals    => ['opaque', 'sint32[]', 'size_t', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_loop_clear_unix_signals => ['opaque'] => 'sint32'],
    [sb_loop_add_timer    => ['opaque', 'uint64', 'opaque', 'opaque', 'opaque', 'uint64*'] => 'sint32'],
    [sb_loop_cancel_timer => ['opaque', 'uint64'] => 'sint32'],

    [sb_broker_new           => ['opaque', 'string[]', 'size_t', 'string', 'opaque*'] => 'sint32'],
    [sb_broker_free          => ['opaque'] => 'void'],
    [sb_broker_address_count => ['opaque'] => 'size_t'],
    [sb_broker_address       => ['opaque', 'size_t', 'opaque', 'size_t'] => 'sint32'],
    [sb_broker_pending_calls => ['opaque'] => 'size_t'],
    [sb_broker_report        => ['opaque', 'opaque*'] => 'sint32'],
    [sb_broker_report_prometheus => ['opaque', 'opaque', 'size_t', 'size_t*'] => 'sint32'],
    [sb_broker_set_ping      => ['opaque', 'uint64', 'uint32'] => 'sint32'],
    [sb_broker_set_limit     => ['opaque', 'string', 'uint64'] => 'sint32'],
    [sb_broker_limit         => ['opaque', 'string', 'uint64*'] => 'sint32'],
    [sb_broker_limits_exceeded => ['opaque'] => 'uint64'],

    [sb_client_connect         => ['opaque', 'string', 'string', 'opaque', 'opaque', 'opaque', 'opaque*'] => 'sint32'],
    [sb_client_on_disconnect   => ['opaque', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_client_on_session_gone => ['opaque', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_client_on_unknown_message => ['opaque', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_client_send_custom     => ['opaque', 'string', 'uint64', 'opaque', 'size_t'] => 'sint32'],
    [sb_client_listing         => ['opaque', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_client_stats           => ['opaque', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_client_monitor         => ['opaque', 'string', 'bool', 'opaque', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_client_call            => ['opaque', 'string', 'string', 'opaque', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_client_call_sync       => ['opaque', 'string', 'string', 'opaque', 'uint64', 'opaque*'] => 'sint32'],
    [sb_client_rescind         => ['opaque', 'string', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_client_close           => ['opaque'] => 'sint32'],
    [sb_client_close_graceful  => ['opaque', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_client_set_linger      => ['opaque', 'uint64'] => 'sint32'],
    [sb_client_set_default_timeout_ms => ['opaque', 'uint64'] => 'sint32'],
    [sb_client_set_ping        => ['opaque', 'uint64', 'uint32'] => 'sint32'],
    [sb_client_set_reconnect   => ['opaque', 'uint64', 'uint64', 'uint32'] => 'sint32'],
    [sb_client_disable_reconnect => ['opaque'] => 'sint32'],
    [sb_client_add_address     => ['opaque', 'string'] => 'sint32'],
    [sb_client_set_reconnect_buffer => ['opaque', 'bool', 'size_t'] => 'sint32'],
    [sb_client_set_reconnect_restore => ['opaque', 'uint64', 'uint64'] => 'sint32'],
    [sb_client_on_connection_event => ['opaque', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_client_free            => ['opaque'] => 'void'],

    [sb_stage_new      => ['opaque', 'string', 'opaque*'] => 'sint32'],
    [sb_stage_free     => ['opaque'] => 'void'],
    [sb_stage_on       => ['opaque', 'string', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_stage_set_kind => ['opaque', 'string', 'uint32'] => 'sint32'],
    [sb_stage_publish  => ['opaque', 'opaque', 'string', 'string[]', 'size_t', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_stage_set_data => ['opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_stage_data     => ['opaque'] => 'opaque'],
    [sb_stage_name     => ['opaque', 'opaque*', 'size_t*'] => 'sint32'],

    [sb_remote_subscribe   => ['opaque', 'string', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_remote_subscribe_wait => ['opaque', 'string', 'uint64', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_remote_unsubscribe => ['opaque', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_remote_free        => ['opaque'] => 'void'],

    [sb_request_to_stage          => ['opaque', 'string'] => 'opaque'],
    [sb_request_to_remote         => ['opaque', 'string'] => 'opaque'],
    [sb_request_builder_free      => ['opaque'] => 'void'],
    [sb_request_builder_args      => ['opaque', 'opaque'] => 'sint32'],
    [sb_request_builder_on        => ['opaque', 'string', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_request_builder_on_method => ['opaque', 'string', 'string'] => 'sint32'],
    [sb_request_builder_fallback  => ['opaque', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_request_builder_role      => ['opaque', 'string'] => 'sint32'],
    [sb_request_builder_timeout_ms => ['opaque', 'uint64'] => 'sint32'],
    [sb_request_builder_parent    => ['opaque', 'opaque'] => 'sint32'],
    [sb_request_send              => ['opaque', 'opaque*'] => 'sint32'],
    [sb_request_free              => ['opaque'] => 'void'],
    [sb_request_cancel            => ['opaque'] => 'bool'],
    [sb_request_id                => ['opaque'] => 'uint64'],
    [sb_request_is_open           => ['opaque'] => 'bool'],
    [sb_request_set_data          => ['opaque', 'opaque', 'opaque'] => 'sint32'],

    [sb_ctx_name  => ['opaque'] => 'string'],
    [sb_ctx_args  => ['opaque'] => 'opaque'],
    [sb_ctx_req   => ['opaque'] => 'opaque'],
    [sb_ctx_rsp   => ['opaque'] => 'opaque'],
    [sb_ctx_stage => ['opaque'] => 'opaque'],

    [sb_served_ref       => ['opaque'] => 'opaque'],
    [sb_served_free      => ['opaque'] => 'void'],
    [sb_served_id        => ['opaque'] => 'uint64'],
    [sb_served_caller_id => ['opaque'] => 'uint64'],
    [sb_served_is_open   => ['opaque'] => 'bool'],
    [sb_served_time_left_ms => ['opaque', 'sint64*'] => 'sint32'],
    [sb_served_emit      => ['opaque', 'string', 'opaque'] => 'sint32'],
    [sb_served_return    => ['opaque', 'string', 'opaque'] => 'sint32'],
    [sb_served_fail      => ['opaque', 'sint32', 'string'] => 'sint32'],
    [sb_served_on_cancel => ['opaque', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_served_set_data  => ['opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_served_data      => ['opaque'] => 'opaque'],
    [sb_served_caller_connection  => ['opaque'] => 'uint64'],
    [sb_served_caller_uid         => ['opaque', 'uint32*'] => 'sint32'],
    [sb_served_caller_gid         => ['opaque', 'uint32*'] => 'sint32'],
    [sb_served_caller_pid         => ['opaque', 'uint32*'] => 'sint32'],
    [sb_served_caller_identity    => ['opaque', 'opaque', 'size_t'] => 'sint32'],
    [sb_served_caller_client_name => ['opaque', 'opaque', 'size_t'] => 'sint32'],

    [sb_broker_options_new             => ['opaque*'] => 'sint32'],
    [sb_broker_options_free            => ['opaque'] => 'void'],
    [sb_broker_options_set_token       => ['opaque', 'string'] => 'sint32'],
    [sb_broker_options_add_named_token => ['opaque', 'string', 'string'] => 'sint32'],
    [sb_broker_options_set_socket_mode => ['opaque', 'uint32'] => 'sint32'],
    [sb_broker_options_set_socket_group => ['opaque', 'string'] => 'sint32'],
    [sb_broker_options_set_federation => ['opaque', 'string', 'string', 'string'] => 'sint32'],
    [sb_broker_options_set_nats_credentials => ['opaque', 'string', 'string', 'string'] => 'sint32'],
    [sb_broker_options_set_nats_nkey => ['opaque', 'string'] => 'sint32'],
    [sb_broker_options_set_nats_tls => ['opaque', 'string', 'string', 'string'] => 'sint32'],
    [sb_broker_options_set_federation_heartbeat => ['opaque', 'uint64', 'uint64'] => 'sint32'],
    [sb_broker_options_set_federation_sys_events => ['opaque', 'bool'] => 'sint32'],
    [sb_broker_options_set_policy_file => ['opaque', 'string'] => 'sint32'],
    [sb_broker_new_with                => ['opaque', 'string[]', 'size_t', 'opaque', 'opaque*'] => 'sint32'],
    [sb_broker_access_denied           => ['opaque'] => 'uint64'],
    [sb_broker_options_set_tls_cert      => ['opaque', 'string', 'string'] => 'sint32'],
    [sb_broker_options_set_tls_client_ca => ['opaque', 'string'] => 'sint32'],
    [sb_broker_tls_handshake_failures    => ['opaque'] => 'uint64'],
    [sb_client_options_set_tls_ca        => ['opaque', 'string'] => 'sint32'],
    [sb_client_options_set_tls_cert      => ['opaque', 'string', 'string'] => 'sint32'],
    [sb_client_options_new             => ['opaque*'] => 'sint32'],
    [sb_client_options_free            => ['opaque'] => 'void'],
    [sb_client_options_set_token       => ['opaque', 'string'] => 'sint32'],
    [sb_client_options_set_name        => ['opaque', 'string'] => 'sint32'],
    [sb_client_connect_with            => ['opaque', 'string', 'opaque', 'opaque', 'opaque', 'opaque', 'opaque*'] => 'sint32'],

    [sb_response_id       => ['opaque'] => 'uint64'],
    [sb_response_kind     => ['opaque'] => 'string'],
    [sb_response_is_final => ['opaque'] => 'bool'],
    [sb_response_error    => ['opaque'] => 'sint32'],
    [sb_response_message  => ['opaque'] => 'string'],
    [sb_response_data     => ['opaque'] => 'opaque'],
    [sb_response_recall   => ['opaque', 'string', 'opaque'] => 'sint32'],
    [sb_response_cancel   => ['opaque'] => 'bool'],

    [sb_args_new       => [] => 'opaque'],
    [sb_args_free      => ['opaque'] => 'void'],
    [sb_args_set_null  => ['opaque', 'string'] => 'sint32'],
    [sb_args_set_bool  => ['opaque', 'string', 'bool'] => 'sint32'],
    [sb_args_set_int   => ['opaque', 'string', 'sint64'] => 'sint32'],
    [sb_args_set_float => ['opaque', 'string', 'double'] => 'sint32'],
    [sb_args_set_string => ['opaque', 'string', 'string'] => 'sint32'],
    [sb_args_set_string_n => ['opaque', 'string', 'opaque', 'size_t'] => 'sint32'],
    [sb_args_set_bytes => ['opaque', 'string', 'opaque', 'size_t'] => 'sint32'],
    [sb_args_set_value => ['opaque', 'string', 'opaque'] => 'sint32'],
    [sb_args_len       => ['opaque'] => 'size_t'],
    [sb_args_entry     => ['opaque', 'size_t', 'opaque*', 'size_t*', 'opaque*'] => 'sint32'],

    [sb_value_new_null   => [] => 'opaque'],
    [sb_value_new_bool   => ['bool'] => 'opaque'],
    [sb_value_new_int    => ['sint64'] => 'opaque'],
    [sb_value_new_float  => ['double'] => 'opaque'],
    [sb_value_new_string => ['string'] => 'opaque'],
    [sb_value_new_string_n => ['opaque', 'size_t'] => 'opaque'],
    [sb_value_new_bytes  => ['opaque', 'size_t'] => 'opaque'],
    [sb_value_new_list   => [] => 'opaque'],
    [sb_value_new_map    => ['opaque'] => 'opaque'],
    [sb_value_list_push  => ['opaque', 'opaque'] => 'sint32'],
    [sb_value_free       => ['opaque'] => 'void'],
    [sb_value_type_of    => ['opaque'] => 'sint32'],
    [sb_value_bool       => ['opaque', 'bool*'] => 'sint32'],
    [sb_value_int        => ['opaque', 'sint64*'] => 'sint32'],
    [sb_value_float      => ['opaque', 'double*'] => 'sint32'],
    [sb_value_bytes      => ['opaque', 'opaque*', 'size_t*'] => 'sint32'],
    [sb_value_list_len   => ['opaque'] => 'size_t'],
    [sb_value_list_get   => ['opaque', 'size_t'] => 'opaque'],
    [sb_value_map        => ['opaque'] => 'opaque'],

    [sb_client_emit_signal     => ['opaque', 'string', 'string', 'opaque'] => 'sint32'],
    [sb_client_add_match       => ['opaque', 'string', 'string', 'opaque', 'opaque', 'opaque', 'opaque', 'uint64*'] => 'sint32'],
    [sb_client_remove_match    => ['opaque', 'uint64', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_client_dropped_answers => ['opaque'] => 'uint64'],
    [sb_remote_post            => ['opaque', 'string', 'opaque'] => 'sint32'],
    [sb_served_expects_answer  => ['opaque'] => 'bool'],
    [sb_client_watch           => ['opaque', 'string', 'opaque', 'opaque', 'opaque', 'opaque', 'uint64*'] => 'sint32'],
    [sb_client_unwatch         => ['opaque', 'uint64', 'opaque', 'opaque', 'opaque'] => 'sint32'],
    [sb_stage_publish_mode     => ['opaque', 'opaque', 'string', 'string[]', 'size_t', 'uint32', 'opaque', 'opaque', 'opaque'] => 'sint32'],
);

for my $f (@FUNCTIONS) {
    my ($name, $args, $ret) = @$f;
    $ffi->attach([$name => "StageBus::_C::$name"] => $args => $ret);
}

# The binding is written against this C API (0.x: every minor may break it).
{
    my $v = StageBus::_C::sb_version();
    $v =~ /^0\.1\./
        or StageBus::Error->throw(code => 'invalid_state',
            message => "$LIBRARY is stagebus $v; this binding needs 0.1.x");
    for my $name (keys %StageBus::Error::CODE_OF) {
        my $code = $StageBus::Error::CODE_OF{$name};
        my $lib  = StageBus::_C::sb_strerror($code);
        warn "stagebus: status $code is '$lib' in the library, '$name' here\n" if $lib ne $name;
    }
}

sub version { StageBus::_C::sb_version() }

# Value types (sb_value_type).
use constant {
    _T_NULL   => 0,
    _T_BOOL   => 1,
    _T_INT    => 2,
    _T_FLOAT  => 3,
    _T_STRING => 4,
    _T_BYTES  => 5,
    _T_LIST   => 6,
    _T_MAP    => 7,
};

use constant TRUE  => !!1;
use constant FALSE => !!0;

# ---------------------------------------------------------------------
# The registry of user data handed to the library
#
# Every callback and data slot the library holds is an integer id passed
# as `user` (never a Perl pointer). %REG maps it to its record: the code
# ref, what the binding needs to call it, or a data hash. The one
# C-callable free function ($FREE) removes the record when the library
# calls it: exactly once, when the library no longer needs it.
#
# What the record held is not destroyed inside free_user: it goes to
# @GRAVE and is dropped at the next safe point (no library frame on the
# stack: after dispatch, after a handle's sb_*_free, ...). Destroying it
# may run DESTROY of StageBus objects, which call back into the library,
# and that must not happen while the library is in the middle of
# dropping something.

our %REG;
our @GRAVE;
our $DEPTH = 0;    # library callbacks on the stack
my $next_id = 1;
my $burying = 0;

sub _register {
    my ($rec) = @_;
    my $id = $next_id++;
    $REG{$id} = $rec;
    return $id;
}

# Drops the records the library released, when no library frame is on
# the stack.
sub _bury {
    return if $DEPTH || $burying || !@GRAVE;
    $burying = 1;
    my $ok = eval {
        while (@GRAVE) {
            my @g = splice @GRAVE;
            @g = ();
        }
        1;
    };
    my $err = $@;
    $burying = 0;
    _diagnose("destroying released user data failed: $err") unless $ok;
}

# Records not released by the library (for tests).
sub _live_records { scalar keys %REG }

# ---------------------------------------------------------------------
# Handles still alive at exit
#
# In global destruction Perl destroys objects in no order, FFI::Platypus'
# closures (the C entry points of every callback) included, after which
# the library must not be called. So every owned handle is tracked
# (weakly), and an END block frees the ones still alive while everything
# works: requests first, the loops last (any order would do for the
# library; this one lets free hooks see their loop). After that, DESTROY
# in global destruction does nothing.

our %LIVE;

sub _track {
    my ($obj) = @_;
    my $k = Scalar::Util::refaddr($obj);
    $LIVE{$k} = $obj;
    Scalar::Util::weaken($LIVE{$k});
    return $obj;
}

sub _untrack { delete $LIVE{ Scalar::Util::refaddr($_[0]) } }

sub _in_global_destruction { ${^GLOBAL_PHASE} eq 'DESTRUCT' }

my @FREE_ORDER = qw(StageBus::Request StageBus::Served StageBus::Remote StageBus::Stage
    StageBus::Client StageBus::Broker StageBus::Loop);

sub _free_all {
    local ($@, $?);
    # Strong copies: freeing one object may drop others.
    my @all = grep { defined } values %LIVE;
    for my $class (@FREE_ORDER) {
        for my $obj (grep { $_->isa($class) } @all) {
            eval { $obj->_free; 1 } or warn "stagebus: freeing $obj at exit failed: $@";
        }
    }
    @all = ();
    _bury();
}

END {
    _free_all();
    # The handler's closure goes in global destruction; the library
    # must not call it then.
    StageBus::_C::sb_set_log_handler(undef, 1, undef, undef) if $StageBus::LOG_HANDLER;
}

# ---------------------------------------------------------------------
# Diagnostics: failures with nobody to tell (a callback died where no
# request can carry the error).

our $DIAGNOSTIC;
our $LOG_HANDLER;

my @LOG_LEVELS = qw(error warn info debug trace);
my %LOG_LEVEL_OF = map { $LOG_LEVELS[$_] => $_ + 1 } 0 .. $#LOG_LEVELS;

sub set_diagnostic_hook {
    my ($hook) = @_;
    $hook = $hook->[0] if ref $hook eq 'ARRAY';
    $DIAGNOSTIC = $hook;
}

# set_log_handler($code, $level): the library's log records at $level
# ('error' .. 'trace', default 'warn') or more severe, and this
# binding's own diagnostics, go to $code; undef stops logging.
sub set_log_handler {
    my ($code, $level) = @_;
    $level //= 'warn';
    my $n = $LOG_LEVEL_OF{$level}
        // StageBus::Error->throw(code => 'invalid_argument',
            message => "unknown log level '$level' (error, warn, info, debug, trace)");
    if (defined $code && ref $code ne 'CODE') {
        StageBus::Error->throw(code => 'invalid_argument', message => 'the log handler must be a code ref');
    }
    my $st = StageBus::_C::sb_set_log_handler($code ? _fn('log') : undef, $n, undef, undef);
    StageBus::Error->throw(code => $st, message => StageBus::_C::sb_last_error()) if $st;
    $LOG_HANDLER = $code;
    return;
}

sub _diagnose {
    my ($msg) = @_;
    chomp $msg;
    if ($LOG_HANDLER) {
        local $@;
        return if eval { $LOG_HANDLER->('warn', 'stagebus::perl', $msg, {}); 1 };
    }
    if ($DIAGNOSTIC) {
        local $@;
        return if eval { $DIAGNOSTIC->($msg); 1 };
    }
    warn "stagebus: $msg\n";
}

# ---------------------------------------------------------------------
# Callbacks: one static closure per C signature, made once, never freed.

sub _run_cb {
    my ($what, $code, @args) = @_;
    local $@;
    return 1 if eval { $code->(@args); 1 };
    _diagnose("$what died: $@");
    return 0;
}

# Text from C (UTF-8 bytes) to a Perl character string.
sub _from_c {
    my ($s) = @_;
    return undef unless defined $s;
    utf8::decode($s);
    return $s;
}

# A Perl string to NUL-terminated UTF-8 for C.
sub _to_c {
    my ($s, $what) = @_;
    return undef unless defined $s;
    $s = "$s";
    utf8::encode($s);
    if (index($s, "\0") >= 0) {
        StageBus::Error->throw(code => 'invalid_argument',
            message => "$what contains a NUL character, which the C API cannot carry in text");
    }
    return $s;
}

# A Perl string to UTF-8 octets for the functions taking text with a
# length (sb_args_set_string_n, sb_value_new_string_n): NULs included.
sub _text_octets {
    my ($s) = @_;
    $s = "$s";
    utf8::encode($s);
    return $s;
}

sub _err {
    my ($status, $message) = @_;
    return undef if !$status;
    return StageBus::Error->new(code => $status, message => _from_c($message), async => 1);
}

my %CLOSURES;
my %FN;

sub _closure {
    my ($name, $type, $sub) = @_;
    my $c = $ffi->closure($sub);
    $c->sticky;
    $CLOSURES{$name} = $c;
    $FN{$name} = $ffi->cast($type => 'opaque', $c);
}

# free_user for every registration.
_closure(free => '(opaque)->void', sub {
    my ($id) = @_;
    local $@;
    eval {
        my $rec = delete $REG{$id};
        push @GRAVE, $rec if defined $rec;
        1;
    } or eval { warn "stagebus: free_user failed: $@" };
    return;
});

# sb_handler_fn: stage handlers and request response handlers.
_closure(handler => '(opaque,opaque)->sint32', sub {
    my ($id, $ctxp) = @_;
    local $DEPTH = $DEPTH + 1;
    local $@;
    my $rc = 0;
    eval { $rc = StageBus::Context::_run($REG{$id}, $ctxp); 1 }
        or eval { warn "stagebus: handler dispatch failed: $@"; };
    return $rc;
});

# sb_done_fn
_closure(done => '(opaque,sint32,string)->void', sub {
    my ($id, $status, $message) = @_;
    local $DEPTH = $DEPTH + 1;
    local $@;
    eval {
        my $rec = $REG{$id} or return;
        _run_cb($rec->{what}, $rec->{code}, _err($status, $message));
        1;
    } or eval { warn "stagebus: done callback failed: $@" };
    return;
});

# sb_connect_fn
_closure(connect => '(opaque,sint32,uint64,string)->void', sub {
    my ($id, $status, $conn, $message) = @_;
    local $DEPTH = $DEPTH + 1;
    local $@;
    eval {
        my $rec = $REG{$id} or return;
        _run_cb('on_connect', $rec->{code}, _err($status, $message), $status ? undef : $conn);
        1;
    } or eval { warn "stagebus: connect callback failed: $@" };
    return;
});

# sb_session_gone_fn
_closure(session_gone => '(opaque,string,sint32,string)->void', sub {
    my ($id, $session, $status, $message) = @_;
    local $DEPTH = $DEPTH + 1;
    local $@;
    eval {
        my $rec = $REG{$id} or return;
        my $err = StageBus::Error->new(code => $status, message => _from_c($message), async => 1);
        _run_cb('on_session_gone', $rec->{code}, _from_c($session), $err);
        1;
    } or eval { warn "stagebus: session-gone callback failed: $@" };
    return;
});

# sb_connection_event_fn: $code->($event, $session, $err), $event one of
# disconnected, reconnected, republish_failed, restore_failed.
my %CONNECTION_EVENT = (
    1 => 'disconnected', 2 => 'reconnected', 3 => 'republish_failed', 4 => 'restore_failed',
);
_closure(connection_event => '(opaque,uint32,string,sint32,string)->void', sub {
    my ($id, $event, $session, $status, $message) = @_;
    local $DEPTH = $DEPTH + 1;
    local $@;
    eval {
        my $rec = $REG{$id} or return;
        my $name = $CONNECTION_EVENT{$event} // "event $event";
        _run_cb('on_connection_event', $rec->{code}, $name,
            defined $session ? _from_c($session) : undef, _err($status, $message));
        1;
    } or eval { warn "stagebus: connection-event callback failed: $@" };
    return;
});

# sb_listing_fn
_closure(listing => '(opaque,sint32,opaque,string)->void', sub {
    my ($id, $status, $value, $message) = @_;
    local $DEPTH = $DEPTH + 1;
    local $@;
    eval {
        my $rec = $REG{$id} or return;
        my $sessions = $status ? undef : _decode_value($value);
        _run_cb('on_listing', $rec->{code}, _err($status, $message), $sessions);
        1;
    } or eval { warn "stagebus: listing callback failed: $@" };
    return;
});

# sb_subscribed_fn
_closure(subscribed => '(opaque,sint32,opaque,string)->void', sub {
    my ($id, $status, $remote, $message) = @_;
    local $DEPTH = $DEPTH + 1;
    local $@;
    eval {
        my $rec = $REG{$id};
        # The remote is ours now: wrap it first, so it is freed even if
        # the callback is gone or dies.
        my $r = $remote ? StageBus::Remote->_wrap($remote, $rec && $rec->{loop}, $rec && $rec->{session}) : undef;
        _run_cb('on_subscribed', $rec->{code}, _err($status, $message), $r) if $rec;
        1;
    } or eval { warn "stagebus: subscribe callback failed: $@" };
    return;
});

# sb_unknown_message_fn: kind, id and the payload as an octet string.
_closure(unknown_message => '(opaque,string,uint64,opaque,size_t)->void', sub {
    my ($id, $kind, $msg_id, $payload, $len) = @_;
    local $DEPTH = $DEPTH + 1;
    local $@;
    eval {
        my $rec = $REG{$id} or return;
        my $octets = $len ? buffer_to_scalar($payload, $len) : '';
        _run_cb('on_unknown_message', $rec->{code}, _from_c($kind), $msg_id, $octets);
        1;
    } or eval { warn "stagebus: unknown-message callback failed: $@" };
    return;
});

# sb_signal_fn: a signal for a match, its args decoded.
_closure(signal => '(opaque,string,string,opaque)->void', sub {
    my ($id, $session, $signal, $args) = @_;
    local $DEPTH = $DEPTH + 1;
    local $@;
    eval {
        my $rec = $REG{$id} or return;
        _run_cb('on_signal', $rec->{on_signal}, _from_c($session), _from_c($signal), _decode_args($args));
        1;
    } or eval { warn "stagebus: signal callback failed: $@" };
    return;
});

# sb_name_event_fn: an event of a name watch.
my @NAME_EVENTS = qw(present appeared owner_changed gone);
_closure(name_event => '(opaque,sint32,string,opaque,sint32,string)->void', sub {
    my ($id, $event, $name, $methods, $reason, $message) = @_;
    local $DEPTH = $DEPTH + 1;
    local $@;
    eval {
        my $rec = $REG{$id} or return;
        my %e = (event => $NAME_EVENTS[$event] // 'unknown', name => _from_c($name));
        if ($methods) {
            $e{methods} = _decode_value($methods);
        }
        else {
            $e{reason} = StageBus::Error->new(code => $reason, message => _from_c($message), async => 1);
        }
        _run_cb('on_event', $rec->{on_event}, \%e);
        1;
    } or eval { warn "stagebus: name event callback failed: $@" };
    return;
});

# sb_notify_fn (on-cancel)
_closure(notify => '(opaque)->void', sub {
    my ($id) = @_;
    local $DEPTH = $DEPTH + 1;
    local $@;
    eval {
        my $rec = $REG{$id} or return;
        _run_cb('on_cancel', $rec->{code});
        1;
    } or eval { warn "stagebus: notify callback failed: $@" };
    return;
});

# sb_loop_fn (timers)
_closure(loop_fn => '(opaque,opaque)->void', sub {
    my ($id, $lp) = @_;
    local $DEPTH = $DEPTH + 1;
    local $@;
    eval {
        my $rec = $REG{$id} or return;
        _run_cb('timer', $rec->{code}, $rec->{loop});
        1;
    } or eval { warn "stagebus: timer callback failed: $@" };
    return;
});

# sb_unix_signal_fn: a Unix signal taken on the loop, by name ('TERM').
_closure(unix_signal => '(opaque,opaque,sint32)->void', sub {
    my ($id, $lp, $signal) = @_;
    local $DEPTH = $DEPTH + 1;
    local $@;
    eval {
        my $rec = $REG{$id} or return;
        _run_cb('on_unix_signals', $rec->{code}, StageBus::Loop::_signal_name($signal));
        1;
    } or eval { warn "stagebus: signal callback failed: $@" };
    return;
});

# sb_watch_fn: the fds a host watches, one by one.
_closure(watch => '(opaque,sint32,uint32)->void', sub {
    my ($id, $fd, $events) = @_;
    local $DEPTH = $DEPTH + 1;
    local $@;
    eval {
        my $rec = $REG{$id} or return;
        _run_cb('watch_fds', $rec->{code}, $fd, $events);
        1;
    } or eval { warn "stagebus: watch callback failed: $@" };
    return;
});

# sb_tap_fn: a monitor's event, as a hash; the record's `tap` code.
_closure(tap => '(opaque,opaque)->void', sub {
    my ($id, $event) = @_;
    local $DEPTH = $DEPTH + 1;
    local $@;
    eval {
        my $rec = $REG{$id} or return;
        _run_cb('on_tap', $rec->{tap}, _decode_value($event));
        1;
    } or eval { warn "stagebus: tap callback failed: $@" };
    return;
});

# sb_log_fn: the log handler is process-wide, so its code ref is a
# global (no user data); fields arrive as an array of two C strings each.
_closure(log => '(opaque,sint32,string,string,opaque,size_t)->void', sub {
    my (undef, $level, $target, $message, $fields, $n) = @_;
    my $code = $LOG_HANDLER or return;
    local $@;
    eval {
        my %fields;
        if ($n) {
            my @p = unpack 'J*', buffer_to_scalar($fields, $n * 2 * $ffi->sizeof('opaque'));
            while (my ($k, $v) = splice @p, 0, 2) {
                $fields{ _from_c($ffi->cast(opaque => string => $k)) } =
                    _from_c($ffi->cast(opaque => string => $v));
            }
        }
        $code->($LOG_LEVELS[$level - 1] // 'error', _from_c($target), _from_c($message), \%fields);
        1;
    } or eval { warn "stagebus: log handler failed: $@" };
    return;
});

sub _fn { $FN{ $_[0] } }

# Set by StageBus::POE::Callback: code ref -> the code ref to register.
our $WRAP_CALLBACK;

# Registers a callback; returns (fn, user, free_user). The record's
# loop is a weak reference: the registry must not keep a loop alive.
sub _cb_args {
    my ($kind, $code, %rec) = @_;
    ref $code eq 'CODE'
        or _croak(invalid_argument => ($rec{what} // $kind) . ' needs a code ref');
    # StageBus::POE::Callback: the callback runs in the POE session that
    # registered it.
    $code = $WRAP_CALLBACK->($code) if $WRAP_CALLBACK && $kind ne 'free';
    my $rec = { code => $code, %rec };
    Scalar::Util::weaken($rec->{loop}) if ref $rec->{loop};
    return ($FN{$kind}, _register($rec), $FN{free});
}

# Checks a status: dies with a StageBus::Error (detail from
# sb_last_error) unless it is SB_OK.
sub _check {
    my ($status, $what) = @_;
    _bury() if @GRAVE && !$DEPTH;
    return if !$status;
    my $detail = _from_c(StageBus::_C::sb_last_error());
    $detail = "$what: $detail" if defined $what && length $what;
    StageBus::Error->throw(code => $status, message => $detail);
}

sub _croak {
    my ($code, $message) = @_;
    StageBus::Error->throw(code => $code, message => $message);
}

# Named arguments: a hash, with the required ones checked.
sub _named {
    my ($what, $args, @required) = @_;
    @$args % 2 == 0 or _croak(invalid_argument => "$what takes named arguments (key => value pairs)");
    my %a = @$args;
    for (@required) {
        defined $a{$_} or _croak(invalid_argument => "$what: '$_' is required");
    }
    return \%a;
}

# ---------------------------------------------------------------------
# Args: Perl data to sb_args and back
#
#   undef                   <-> null
#   builtin booleans (!!1, !!0, comparison results; Perl 5.36+),
#     JSON::PP::Boolean-like objects, \1 and \0  -> bool -> !!1 / !!0
#   a number (a scalar last set as a number)    <-> int (64-bit) or float
#   any other defined scalar (a character string) <-> string (UTF-8)
#   StageBus::Bytes (StageBus::bytes($octets))  <-> bytes
#   array ref               <-> list
#   hash ref                <-> map
#
# Text is Perl characters: a string is encoded as UTF-8 whatever its
# utf8 flag, and decoded back to the same characters. Binary data is
# never guessed from the flag: wrap it with StageBus::bytes, and it
# comes back as a StageBus::Bytes (which stringifies to its octets), so
# that text and bytes both round-trip exactly.

my $HAS_IS_BOOL = defined &builtin::is_bool;

sub _is_bool {
    no warnings;    # builtin::is_bool is experimental in 5.36
    return $HAS_IS_BOOL && builtin::is_bool($_[0]);
}

my $NUM_FLAGS = B::SVf_IOK | B::SVf_NOK | B::SVp_IOK | B::SVp_NOK;

# 'int', 'float' or undef (a string).
sub _number_kind {
    my $sv = B::svref_2object(\$_[0]);
    my $f  = $sv->FLAGS;
    return undef if !($f & $NUM_FLAGS) || ($f & B::SVf_POK);
    # A public IOK is an exact integer (an int, or a float whose integral
    # value Perl also used as an integer); a float used in integer
    # context (2.5 == 2) gets only the private IOK and stays a float.
    if ($f & B::SVf_IOK) {
        # An unsigned integer above the int64 range is sent as a float.
        return 'float' if ($f & B::SVf_IVisUV) && $_[0] > 9223372036854775807;
        return 'int';
    }
    return 'float' if $f & (B::SVf_NOK | B::SVp_NOK);
    return 'int';
}

my $MAX_DEPTH = 64;

# Perl value -> owned sb_value.
sub _to_value {
    my ($v, $depth) = @_;
    return StageBus::_C::sb_value_new_null() if !defined $v;
    if (my $r = ref $v) {
        $depth < $MAX_DEPTH or _croak(invalid_argument => "args nested deeper than $MAX_DEPTH (a cycle?)");
        if ($r eq 'HASH') {
            return _new_or_die(StageBus::_C::sb_value_new_map(_encode_args($v, $depth + 1)), 'map');
        }
        if ($r eq 'ARRAY') {
            my $list = _new_or_die(StageBus::_C::sb_value_new_list(), 'list');
            for my $item (@$v) {
                my $iv = eval { _to_value($item, $depth + 1) };
                if (!$iv) {
                    my $e = $@;
                    StageBus::_C::sb_value_free($list);
                    die $e;
                }
                my $st = StageBus::_C::sb_value_list_push($list, $iv);
                if ($st) {
                    StageBus::_C::sb_value_free($list);
                    _check($st, 'list push');
                }
            }
            return $list;
        }
        if ($r eq 'StageBus::Bytes') {
            my ($p, $n) = scalar_to_buffer($$v);
            return _new_or_die(StageBus::_C::sb_value_new_bytes($p, $n), 'bytes');
        }
        my $b = _bool_ref($v);
        return _new_or_die(StageBus::_C::sb_value_new_bool($b), 'bool') if defined $b;
        _croak(invalid_argument => "cannot send a $r reference in args");
    }
    return _new_or_die(StageBus::_C::sb_value_new_bool($v ? 1 : 0), 'bool') if _is_bool($v);
    my $kind = _number_kind($v);
    return _new_or_die(StageBus::_C::sb_value_new_int($v), 'int') if defined $kind && $kind eq 'int';
    return _new_or_die(StageBus::_C::sb_value_new_float($v), 'float') if defined $kind;
    my $text = _text_octets($v);
    my ($p, $n) = scalar_to_buffer($text);
    return _new_or_die(StageBus::_C::sb_value_new_string_n($p, $n), 'string');
}

sub _new_or_die {
    my ($p, $what) = @_;
    return $p if $p;
    _croak(invalid_argument => "cannot make a $what value: " . _from_c(StageBus::_C::sb_last_error()));
}

# Booleans given as objects or as \1 / \0.
sub _bool_ref {
    my ($v) = @_;
    if (ref $v eq 'SCALAR' && defined $$v && !ref $$v && ($$v eq '1' || $$v eq '0')) {
        return $$v ? 1 : 0;
    }
    if (Scalar::Util::blessed($v)
        && ($v->isa('JSON::PP::Boolean') || $v->isa('boolean') || $v->isa('Types::Serialiser::Boolean')))
    {
        return $v ? 1 : 0;
    }
    return undef;
}

# Perl hash ref -> owned sb_args (free with sb_args_free).
sub _encode_args {
    my ($h, $depth) = @_;
    $depth //= 0;
    ref $h eq 'HASH' or _croak(invalid_argument => 'args must be a hash ref');
    my $args = StageBus::_C::sb_args_new() or _croak(panic => 'sb_args_new failed');
    my $ok = eval {
        # In name order: args keep their names sorted, and names that come
        # in order are appended (random order would move the tail each
        # time: quadratic for large hashes).
        for my $k (sort keys %$h) {
            my $ck = _to_c($k, 'an args key');
            my $v  = $h->{$k};
            my $st;
            if (!defined $v) {
                $st = StageBus::_C::sb_args_set_null($args, $ck);
            }
            elsif (ref $v) {
                if (ref $v eq 'StageBus::Bytes') {
                    my ($p, $n) = scalar_to_buffer($$v);
                    $st = StageBus::_C::sb_args_set_bytes($args, $ck, $p, $n);
                }
                else {
                    $st = StageBus::_C::sb_args_set_value($args, $ck, _to_value($v, $depth));
                }
            }
            elsif (_is_bool($v)) {
                $st = StageBus::_C::sb_args_set_bool($args, $ck, $v ? 1 : 0);
            }
            elsif (my $kind = _number_kind($v)) {
                $st = $kind eq 'int'
                    ? StageBus::_C::sb_args_set_int($args, $ck, $v)
                    : StageBus::_C::sb_args_set_float($args, $ck, $v);
            }
            else {
                my $text = _text_octets($v);
                my ($p, $n) = scalar_to_buffer($text);
                $st = StageBus::_C::sb_args_set_string_n($args, $ck, $p, $n);
            }
            _check($st, "args key '$k'") if $st;
        }
        1;
    };
    if (!$ok) {
        my $e = $@;
        StageBus::_C::sb_args_free($args);
        die $e;
    }
    return $args;
}

# Runs $code with an owned sb_args made from $h (undef: none), freed after.
sub _with_args {
    my ($h, $code) = @_;
    return $code->(undef) unless defined $h;
    my $args = _encode_args($h);
    my @r = eval { $code->($args) };
    my $e = $@;
    StageBus::_C::sb_args_free($args);
    die $e if $e;
    return wantarray ? @r : $r[0];
}

# Borrowed sb_args -> Perl hash ref.
sub _decode_args {
    my ($args) = @_;
    my %h;
    return \%h unless $args;
    my $n = StageBus::_C::sb_args_len($args);
    for my $i (0 .. $n - 1) {
        my ($kp, $klen, $vp);
        _check(StageBus::_C::sb_args_entry($args, $i, \$kp, \$klen, \$vp), 'args entry');
        my $k = $klen ? buffer_to_scalar($kp, $klen) : '';
        utf8::decode($k);
        $h{$k} = _decode_value($vp);
    }
    return \%h;
}

# Borrowed sb_value -> Perl value.
sub _decode_value {
    my ($v) = @_;
    my $t = StageBus::_C::sb_value_type_of($v);
    return undef if $t == _T_NULL;
    if ($t == _T_INT) {
        my $n;
        _check(StageBus::_C::sb_value_int($v, \$n), 'int value');
        return $n;
    }
    if ($t == _T_STRING || $t == _T_BYTES) {
        my ($p, $len);
        _check(StageBus::_C::sb_value_bytes($v, \$p, \$len), 'string value');
        my $s = $len ? buffer_to_scalar($p, $len) : '';
        if ($t == _T_STRING) {
            utf8::decode($s);
            return $s;
        }
        return StageBus::Bytes->new($s);
    }
    if ($t == _T_BOOL) {
        my $b;
        _check(StageBus::_C::sb_value_bool($v, \$b), 'bool value');
        return $b ? TRUE : FALSE;
    }
    if ($t == _T_FLOAT) {
        my $x;
        _check(StageBus::_C::sb_value_float($v, \$x), 'float value');
        return $x;
    }
    if ($t == _T_LIST) {
        my $n = StageBus::_C::sb_value_list_len($v);
        return [map { _decode_value(StageBus::_C::sb_value_list_get($v, $_)) } 0 .. $n - 1];
    }
    if ($t == _T_MAP) {
        return _decode_args(StageBus::_C::sb_value_map($v));
    }
    _croak(wrong_type => "unknown value type $t");
}

sub bytes { StageBus::Bytes->new(@_) }

# A Perl hash ref round-tripped through the library's args (for tests
# and for checking what a value will look like on the other side).
sub roundtrip {
    my ($h) = @_;
    my $args = _encode_args($h);
    my $out = eval { _decode_args($args) };
    my $e = $@;
    StageBus::_C::sb_args_free($args);
    die $e if $e;
    return $out;
}

# ---------------------------------------------------------------------
# Helpers for the handle classes

# Data slot records: a hash ref kept in the registry under the id the
# library holds.
sub _data_slot {
    my ($get, $set, $p) = @_;
    my $id = $get->($p);
    if ($id) {
        my $rec = $REG{$id};
        return $rec->{data} if $rec;
    }
    my $h  = {};
    my $nid = _register({ data => $h });
    _check($set->($p, $nid, $FN{free}), 'set data');
    return $h;
}

package StageBus::Bytes;

use overload
    '""'     => sub { ${ $_[0] } },
    'eq'     => sub { "$_[0]" eq "$_[1]" },
    'ne'     => sub { "$_[0]" ne "$_[1]" },
    'bool'   => sub { 1 },
    fallback => 1;

sub new {
    my ($class, $octets) = @_;
    $octets = '' unless defined $octets;
    $octets = "$octets";
    utf8::downgrade($octets, 1)
        or StageBus::Error->throw(code => 'invalid_argument',
            message => 'StageBus::bytes: wide character (above 0xFF) in bytes; encode the text first');
    return bless \$octets, $class;
}

sub octets { ${ $_[0] } }
sub length { CORE::length ${ $_[0] } }

package StageBus;

use StageBus::Loop;
use StageBus::Broker;
use StageBus::Client;
use StageBus::Stage;
use StageBus::Remote;
use StageBus::Request;
use StageBus::Context;

1;

__END__

=encoding utf8

=head1 NAME

StageBus - Perl binding of stagebus: a broker of published sessions and
POE::Request-style requests (emit, recall, return, cascading cancel)

=head1 SYNOPSIS

    use StageBus;

    my $loop   = StageBus::Loop->new;
    my $broker = StageBus::Broker->new(loop => $loop, listen => ['tcp://127.0.0.1:0']);
    my $client = StageBus::Client->new(loop => $loop, address => $broker->address);

    my $greeter = StageBus::Stage->new(
        loop     => $loop,
        name     => 'Greeter',
        handlers => {
            hello => sub {
                my ($ctx) = @_;
                $ctx->req->return(args => { greeting => 'Hello, ' . $ctx->args->{name} . '!' });
            },
        },
    );

    my $done;
    $greeter->publish(client => $client, session => 'Greeter', on_done => sub {
        my ($err) = @_;
        die $err if $err;
        $client->subscribe(session => 'Greeter', on_subscribed => sub {
            my ($err, $remote) = @_;
            die $err if $err;
            our $req = StageBus::Request->new(
                to        => $remote,
                method    => 'hello',
                args      => { name => 'world' },
                on_return => sub { my ($ctx) = @_; print $ctx->args->{greeting}, "\n"; $done = 1 },
            );
        });
    });
    $loop->run_until(sub { $done }, timeout_ms => 5000);

=head1 DESCRIPTION

The stagebus library (Rust, C ABI) driven from Perl through
L<FFI::Platypus>. The classes:

=over

=item L<StageBus::Loop>

the event loop; C<run>, C<run_for>, C<run_until>, C<dispatch>, timers.
L<StageBus::AnyEvent> and L<StageBus::POE> host it inside those loops.

=item L<StageBus::Broker>, L<StageBus::Client>

a broker listening on TCP / TLS / Unix sockets, and a connection to one.
C<< StageBus::Broker->new(..., tls_cert => FILE, tls_key => FILE,
tls_client_ca => FILE) >> serves C<tls://HOST:PORT> addresses (with
C<tls_client_ca>, mutual TLS: a client certificate's subject, such as
C<CN=alice>, is the caller's identity); C<< StageBus::Client->new(...,
tls_ca => FILE, tls_cert => FILE, tls_key => FILE) >> connects to them
(without C<tls_ca>, trusting the system's certificate store).

=item L<StageBus::Stage>, L<StageBus::Remote>

a named table of handlers (publishable), and a subscribed session.

=item L<StageBus::Request>

a request to a stage or a remote stage, with its response handlers.

=item L<StageBus::Context>, L<StageBus::Served>, L<StageBus::Response>

what a handler sees: the context, the request being served (the
callee's side: emit, return, fail, on_cancel, data) and the response
being handled (the caller's side: recall, cancel, data).

=item L<StageBus::Error>

the exception class.

=item L<StageBus::POE::Proxy>, L<StageBus::POE::Publish>, L<StageBus::POE::Stage>

the POE layer: proxy sessions standing for subscribed sessions (posts
to them run remotely, responses come back as events), existing POE
sessions published (their events are the methods), and
POE::Stage-style stage classes. L<StageBus::POE::Callback> makes every
callback run in the POE session that registered it;
L<StageBus::POE::Args> is how POE arguments travel.

=back

=head2 Loading the library

C<libstagebus.so> is loaded by absolute path: C<$ENV{STAGEBUS_LIB}> if
set (it must be absolute); else, in a copy installed by
F<scripts/install.sh>, the installed library (F<PREFIX/lib/libstagebus.so.0.1>);
else F<target/release/libstagebus.so> or
F<target/debug/libstagebus.so> of the repository this module lies in
(found from the module file's own location, never from the current
directory, also from F<blib/lib> under C<make test>; the newer of the
two when both exist), else an installed libstagebus: found by
L<FFI::CheckLib> (the loader's path, C<LD_LIBRARY_PATH>, and the lib
directory of the prefix the module was installed under), or, without
FFI::CheckLib, by looking in those directories and the usual ones
itself. The library must be a 0.1.x version; C<$StageBus::LIBRARY> is
the one loaded.

=head2 Args

Requests, emits, returns and recalls carry args: a hash ref, nested to
any depth (up to 64 levels), converted like this:

    Perl                                          stagebus
    undef                                         null
    !!1, !!0, comparison results (Perl 5.36+),
      JSON::PP::true/false, \1, \0                bool   -> !!1 / !!0
    a scalar last assigned a number               int (64-bit) or float
    any other scalar (a character string)         string (UTF-8)
    StageBus::bytes($octets)                      bytes  -> StageBus::Bytes
    [ ... ]                                       list
    { ... }                                       map

B<Text or bytes.> Perl strings are characters. A scalar is always sent
as text (its characters UTF-8 encoded, whether or not its utf8 flag is
on) and comes back as the same characters. The utf8 flag is I<not> used
to tell text from bytes, because plain ASCII literals never have it and
Perl turns it on and off as it likes; binary data is marked explicitly
with C<StageBus::bytes($octets)> and arrives as a L<StageBus::Bytes>
object, which stringifies (and compares with C<eq>) as its octets and is
sent back as bytes. So both round-trip exactly, NUL characters
included (text values go through the C API with their length). Names
cannot hold a NUL character (args keys, method, stage and session
names are NUL-terminated strings in the C API): one dies with
C<invalid_argument>.

A number is a scalar whose last assignment was numeric (C<42>,
C<$n + 1>; printing a number does not make it a string; C<"42"> is a
string, even after it was used as a number). Integers beyond the signed
64-bit range are sent as floats; a float with an integral value that
Perl also used as an integer (C<int>, array indexes) may be sent as an
int.

=head2 Callbacks

Handlers are code refs. The library holds each one through an integer
id; the code ref is released when the library calls its C<free_user>
hook (when the handler is replaced, its stage or request is gone, or
after a one-shot completion ran). A C<die> never unwinds through the
library: every callback runs in an C<eval>. A handler serving a request
that dies answers it with an error (C<handler_failed> and the message,
or the code of a L<StageBus::Error> it died with); other failures go to
the log handler (below) at level C<warn> with target C<stagebus::perl>,
else to the older diagnostic hook
(C<StageBus::set_diagnostic_hook(sub { my ($msg) = @_ })>), else to
C<warn>. Do not C<exit> from inside a callback (it would
unwind through the library); stop the loop and exit afterwards.

Handlers should not hold their own stage or request strongly (a cycle
through the library keeps both alive): use C<< $ctx->stage >>,
C<< $ctx->req >>, or a weakened copy.

Objects handed to a handler (the context, its served request, response
and stage) are valid only during the call; keep C<< $ctx->req->keep >>
to answer later. A request that is neither answered nor kept (nor
emitted on, nor the parent of a request still open) when its handler
returns, or whose last kept object is dropped while open, ends with an
C<unanswered> error for its caller.

A publication does not keep its stage: keep the stage object for as
long as it should be served (dropping it rescinds its sessions). So a
handler may use the client (or a remote stage on it) without keeping
the client, and its session, alive after the program dropped them.

=head2 Logging

  StageBus::set_log_handler(sub {
      my ($level, $target, $message, $fields) = @_;
      # $level: 'error' .. 'trace'; $target: 'stagebus::broker', ...;
      # $fields: { conn => 3, reason => 'protocol', ... }
  }, 'info');
  StageBus::set_log_handler(undef);    # stop

The library logs connection lifecycle and refusals (broker), responses
nobody handled and handler failures with nobody to tell (requests), and
never writes to stderr itself: with no handler its records go nowhere.
The handler is process-wide and gets the given level and every more
severe one. It must not die (a C<die> is reported with C<warn>).

=head2 Lifetimes

Every handle is freed by its C<DESTROY>, in any order. Objects keep
their loop alive; C<< $loop->destroy >> frees the loop at once
(objects on it then refuse to be used but may still be dropped). A
request is cancelled when its object is dropped while still open
(POE::Request's rule): keep it (for example in
C<< $ctx->req->data >>) until it ends. Objects are freed only by the
process that made them: a forked child drops its copies without
touching the parent's library state.

=head1 FUNCTIONS

C<StageBus::bytes($octets)>, C<StageBus::version()>,
C<StageBus::roundtrip(\%args)> (args through the library and back),
C<StageBus::set_log_handler($code, $level)>,
C<StageBus::set_diagnostic_hook($code)>, C<StageBus::TRUE>,
C<StageBus::FALSE>.

=cut
