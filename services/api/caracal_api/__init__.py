"""The Caracal admin API (Litestar): thin routes over the domain in caracal.domain."""
