namespace Qed.Formats.Qcow2.Check;

/// <summary>glibc's <c>strerror</c> texts for the errors that stop QEMU's qcow2 check (qemu-img prints <c>Check failed: TEXT</c>).</summary>
internal static class Errno
{
    /// <summary>EFBIG.</summary>
    public const string FileTooLarge = "File too large";

    /// <summary>EINVAL.</summary>
    public const string InvalidArgument = "Invalid argument";

    /// <summary>EIO.</summary>
    public const string InputOutput = "Input/output error";
}
