namespace Qed;

/// <summary>Base of every error this library reports about an image, its backing chain or a request.</summary>
/// <remarks>
/// The message is one line that names what was wrong; callers can print it as is. One type per condition:
/// <see cref="QedFormatException"/> (not a valid image), <see cref="QedCorruptionException"/> (invalid metadata met during
/// I/O), <see cref="QedUnsupportedException"/> (a feature or operation this implementation lacks),
/// <see cref="QedBackingFileException"/> (the backing chain), <see cref="QedReadOnlyException"/> (a change to a read-only
/// image), <see cref="QedLockException"/> (another user holds the image). A request outside the device throws
/// <see cref="ArgumentOutOfRangeException"/>; this base type itself reports failed I/O (open, create, flush).
/// </remarks>
public class QedException : IOException
{
    /// <summary>Creates the exception with a one-line message.</summary>
    public QedException(string message) : base(message) { }

    /// <summary>Creates the exception with a one-line message and the error that caused it.</summary>
    public QedException(string message, Exception? innerException) : base(message, innerException) { }
}
