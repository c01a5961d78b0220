#!/usr/bin/perl
# Reads a bounce with Sisimai (Debian's libsisimai-perl, an independent bounce parser) and
# prints "reason status recipient" for each recipient it finds, or "none" when it finds none.
# Usage: sisimai_reason.pl FILE (one message, as an mbox of one: a "From " line is added).
use strict;
use warnings;
use Sisimai;
use File::Temp qw(tempfile);

open(my $in, '<', $ARGV[0]) or die "$ARGV[0]: $!";
local $/;
my $text = <$in>;
close $in;
$text =~ s/\r\n/\n/g;
my ($fh, $mbox) = tempfile(UNLINK => 1);
print $fh "From MAILER-DAEMON Tue Dec  1 00:00:00 2026\n", $text, "\n";
close $fh;
my $found = Sisimai->make($mbox) || [];
print "none\n" unless @$found;
for my $e (@$found) {
  printf "%s %s %s\n", $e->reason, $e->deliverystatus, $e->recipient->address;
}
