namespace Qed.Check;

/// <summary>One line a check reports on the side of its counters, in the order it was found (qemu-img prints them on stderr).</summary>
/// <param name="Kind">How the line is printed.</param>
/// <param name="Text">The line, without a program name or a newline.</param>
internal readonly record struct CheckMessage(CheckMessageKind Kind, string Text);

/// <summary>How a <see cref="CheckMessage"/> is printed.</summary>
internal enum CheckMessageKind
{
    /// <summary>As it is (QEMU's driver writes these straight to stderr: <c>ERROR cluster 5 refcount=0 reference=1</c>).</summary>
    Plain,

    /// <summary>As an error of the program (<c>PROGRAM: TEXT</c>; QEMU's error reports).</summary>
    Error,

    /// <summary>As a warning of the program (<c>PROGRAM: warning: TEXT</c>).</summary>
    Warning,

    /// <summary>As it is, without a newline: the next line continues it (QEMU prints some hints so).</summary>
    Unterminated,
}
